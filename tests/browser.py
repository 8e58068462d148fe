"""What a person sees in a report: the page as a real headless browser (Debian's chromium)
renders it, scripts run (pytest-html builds its tables in JavaScript)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER_TIMEOUT = 120


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "no chromium: scripts/test.sh installs Debian's chromium package"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        check=False,
    )


def rendered_dom(report: Path) -> str:
    """The report's DOM after the browser ran its scripts."""
    result = _run("--dump-dom", report.resolve().as_uri())
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-500:]
    return result.stdout


def visible_text(dom: str) -> str:
    """The DOM's text as a reader sees it, scripts and styles left out."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def summary_results(dom: str) -> list[str]:
    """The result cell of each row of the snapshot summary, as text."""
    table = re.search(r'<table id="snapshot-summary".*?</table>', dom, re.S)
    assert table, "the report has no snapshot summary"
    cells = re.findall(r'font-weight:bold">(.*?)</td>', table.group(0), re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in cells]


def screenshot(report: Path, target: Path, size: str = "1600,1000") -> Path:
    """A picture of the report as the browser shows it (for the README)."""
    result = _run(f"--screenshot={target}", f"--window-size={size}", report.resolve().as_uri())
    assert result.returncode == 0 and target.is_file(), result.stderr[-500:]
    return target


def printed_pages(report: Path, target: Path) -> list[str]:
    """The report printed to PDF as the browser prints it (print CSS applied), one text per
    page (read back with pypdf)."""
    from pypdf import PdfReader

    result = _run("--no-pdf-header-footer", f"--print-to-pdf={target}", report.resolve().as_uri())
    assert result.returncode == 0 and target.is_file(), result.stderr[-500:]
    return [page.extract_text() for page in PdfReader(target).pages]


def environment_table(dom: str) -> dict[str, str]:
    """The report's Environment table (pytest-html's), name -> value, as rendered."""
    table = re.search(r'<table id="environment".*?</table>', dom, re.S)
    assert table, "the report has no Environment table"
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", table.group(0), re.S)
    return {
        html.unescape(name): html.unescape(re.sub(r"<[^>]+>", "", value)) for name, value in rows
    }
