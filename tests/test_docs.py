"""The documentation site: `mkdocs build --strict` with the tutorials executed (a failing
tutorial, a broken link or a missing reference fails the build), the pages it generates
(API from the docstrings, CLI from the Typer app), and the built site in a real headless
Chromium, served over HTTP as a reader gets it."""

import functools
import html
import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import multigrade
from browser import browser

pytestmark = [pytest.mark.docs, pytest.mark.xdist_group("docs")]  # the site built once

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ["regression", "restoration", "gd-studies", "sweep", "reproduce", "python-api"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                         env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode == 0, res.stderr[-6000:]
    return out


def text_of(page: Path) -> str:
    s = page.read_text(encoding="utf-8")
    body = s[s.index("<article"):s.index("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", "", body))


@pytest.mark.parametrize("name", TUTORIALS)
def test_every_tutorial_ran_and_shows_its_results(site, name):
    page = site / "tutorials" / name / "index.html"
    text = text_of(page)
    assert "Traceback" not in text and "exited with errors" not in text
    # what each tutorial computed, in its output (not in its source)
    expected = {"regression": r"mgdl: test PSNR \d+\.\d\d dB \(after each grade: [\d., ]+\)",
                "restoration": r"choice dB[\s\S]*gap dB",
                "gd-studies": r"largest stable learning rate, sgdl: [\d.]+",
                "sweep": r"sweep: 8 runs \(0 trained now\)",
                "reproduce": r"summary: \S+summary\.md \(2 runs trained now\)",
                "python-api": r"4 grades: \d+\.\d\d dB"}[name]
    assert re.search(expected, text), text[-2000:]
    if name == "reproduce":  # summary.md, rendered: a row per claim with its verdict
        raw = page.read_text(encoding="utf-8")
        assert len(re.findall(r"<td>regression-camera</td>", raw)) == 2
    figures = page.read_text(encoding="utf-8").count('src="data:image/png;base64,')
    assert figures >= {"reproduce": 0, "python-api": 1, "sweep": 1}.get(name, 2)


def test_the_cli_reference_is_generated_from_the_app(site):
    import typer.main

    from multigrade.cli import app

    text = text_of(site / "reference" / "cli" / "index.html")
    commands = typer.main.get_command(app).commands
    assert len(commands) >= 10
    for name, cmd in commands.items():
        assert f"mgdl {name}" in text, name
        for param in cmd.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in text, f"mgdl {name} {opt}"


def test_the_api_reference_shows_every_public_name(site):
    page = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="(multigrade\.[\w.]+)"', page))
    shown = {i.rsplit(".", 1)[-1] for i in ids}
    missing = [n for n in multigrade.__all__ if n not in shown]
    assert not missing, missing
    assert "multigrade.train.fit" in ids and "multigrade.problems.minibatch.MiniBatch" in ids


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["", "tutorials/regression/", "reference/api/"])
def test_the_site_in_headless_chromium(served, path, tmp_path):
    driver = browser()
    try:
        driver.set_window_size(1300, 2000)
        driver.get(f"{served}/{path}")
        assert driver.execute_script("return document.readyState") == "complete"
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        title = driver.execute_script("return document.querySelector('h1').textContent")
        assert title.strip()
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.src.slice(0, 40), "
            "i.complete ? i.naturalWidth : 0])")
        assert all(w > 0 for _, w in images), images
        if path == "tutorials/regression/":
            assert sum(src.startswith("data:image/png") for src, _ in images) == 2
        # the navigation reaches every tutorial
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('nav a')).map(a => a.href)")
        for t in TUTORIALS:
            assert any(link.endswith(f"/tutorials/{t}/") for link in links), t
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
