"""The Zendesk app in deploy/zendesk/app/: the manifest has what Zendesk requires, the package holds the
required files, and the vendored front-end assets are the npm packages' (nothing from a CDN)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "deploy" / "zendesk" / "app"


def _load_builder() -> ModuleType:
    # deploy/ is not a package: load the build script from its path.
    spec = importlib.util.spec_from_file_location("build_app", ROOT / "deploy" / "zendesk" / "build_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_app = _load_builder()


def manifest() -> dict:
    return json.loads((APP_DIR / "manifest.json").read_text(encoding="utf-8"))


def test_the_app_is_valid():
    assert build_app.validate_app(APP_DIR) == []


def test_the_manifest_has_the_fields_zendesk_requires():
    m = manifest()
    assert m["name"] == "Escalate"
    assert m["author"]["name"] and "@" in m["author"]["email"]
    assert m["defaultLocale"] == "en"
    assert m["private"] is True
    assert m["frameworkVersion"] == "2.0"
    assert m["version"]
    sidebar = m["location"]["support"]["ticket_sidebar"]
    assert sidebar == {"url": "{{setting.service_url}}/sidebar", "flexible": True}
    assert m["signedUrls"] is True
    assert m["parameters"] == [{"name": "service_url", "type": "url", "required": True, "secure": False}]


def test_the_package_holds_the_required_files(tmp_path):
    archive = build_app.package(APP_DIR, tmp_path / "app.zip")
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        assert {"manifest.json", "translations/en.json", "assets/logo.png", "assets/logo-small.png"} <= names
        assert json.loads(z.read("manifest.json")) == manifest()
        assert build_app.png_size(z.read("assets/logo.png")) == (320, 320)
        assert build_app.png_size(z.read("assets/logo-small.png")) == (128, 128)
    assert not any(name.startswith(".") or name.endswith("README.md") for name in names)
    again = build_app.package(APP_DIR, tmp_path / "again.zip")
    assert again.read_bytes() == archive.read_bytes()  # reproducible


def _broken(tmp_path: Path, change) -> list[str]:
    app = tmp_path / "app"
    shutil.copytree(APP_DIR, app)
    data = manifest()
    change(data)
    (app / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return build_app.validate_app(app)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.pop("author"), "author needs a name and an email"),
        (lambda m: m.update(frameworkVersion="1.0"), "frameworkVersion"),
        (lambda m: m.update(signedUrls=False), "signedUrls must be true"),
        (lambda m: m.pop("defaultLocale"), "defaultLocale"),
        (lambda m: m.update(private="yes"), "private must be true or false"),
        (lambda m: m.update(location={}), "location.support"),
        (lambda m: m.update(parameters=[]), "undeclared setting service_url"),
        (lambda m: m["parameters"][0].update(type="colour"), "unknown type"),
        (
            lambda m: m["location"]["support"].update(ticket_sidebar={"url": "http://x/sidebar"}),
            "url must be",
        ),
    ],
    ids=["author", "framework", "signed-urls", "locale", "private", "location", "setting", "type", "http"],
)
def test_validation_names_what_is_wrong(tmp_path, change, problem):
    problems = _broken(tmp_path, change)
    assert any(problem in p for p in problems), problems


def test_missing_files_and_labels_are_reported(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP_DIR, app)
    (app / "assets" / "logo-small.png").unlink()
    (app / "translations" / "en.json").write_text('{"app": {"parameters": {}}}', encoding="utf-8")
    problems = build_app.validate_app(app)
    assert "assets/logo-small.png: missing (Zendesk requires it)" in problems
    assert any("app.parameters.service_url.label" in p for p in problems)


def test_the_vendored_assets_come_from_npm():
    vendor = ROOT / "connector" / "static" / "sidebar" / "vendor"
    sdk = (vendor / "zaf_sdk.js").read_text(encoding="utf-8")
    assert sdk.startswith("/*! zendesk_app_framework_sdk ") and "global.ZAFClient = load('index')" in sdk
    garden = (vendor / "garden.css").read_text(encoding="utf-8")
    for name in build_app.GARDEN_CSS:
        assert f"/* @zendeskgarden/{name} " in garden
    assert "http://" not in garden.replace("http://www.w3.org", "").replace("http://www.apache.org", "")
    if not (ROOT / "node_modules").is_dir():
        pytest.skip("node_modules not installed (npm ci): cannot compare with the npm packages")
    assert build_app.stale_vendor() == []
