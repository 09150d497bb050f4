"""Build the Zendesk sidebar app: vendor the front-end assets, validate the app, and package it.

    python deploy/zendesk/build_app.py vendor     # node_modules -> connector/static/sidebar/vendor/
    python deploy/zendesk/build_app.py check      # validate the app; vendored files match node_modules
    python deploy/zendesk/build_app.py package    # validate, then zip the app for upload
    python deploy/zendesk/build_app.py logos      # redraw assets/logo*.png (committed; rarely needed)

``npm ci`` at the repository root fetches the inputs (package.json): Zendesk Garden's CSS and the ZAF SDK
(``zendesk_app_framework_sdk``, which npm ships as CommonJS sources; ``vendor`` bundles them into one
browser script defining ``window.ZAFClient``). The vendored files are committed, so the service and its
tests need neither npm nor a CDN; ``check`` catches a package.json change that was not re-vendored.

Zendesk's own CLI validates apps only online, so ``validate_app`` checks here what Zendesk requires of
an iframe app (DESIGN.md): the manifest fields, ``translations/<defaultLocale>.json``, and the logos.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "deploy" / "zendesk" / "app"
NODE_MODULES = ROOT / "node_modules"
VENDOR_DIR = ROOT / "connector" / "static" / "sidebar" / "vendor"
DEFAULT_ZIP = ROOT / "build" / "escalate-zendesk-app.zip"

# Garden packages in cascade order: bedrock (the reset) first, then the components the page uses.
GARDEN_CSS = ("css-bedrock", "css-variables", "css-buttons", "css-forms", "css-tags", "css-callouts")
SDK_PACKAGE = "zendesk_app_framework_sdk"
SDK_MODULES = ("index", "client", "utils", "vendor/native-promise-only")

# What Zendesk needs in every app package (developer docs, "File requirements"), and the logo sizes.
REQUIRED_FILES = ("manifest.json", "assets/logo.png", "assets/logo-small.png")
LOGO_SIZES = {"assets/logo.png": 320, "assets/logo-small.png": 128}
PARAMETER_TYPES = frozenset(
    {"text", "password", "checkbox", "url", "number", "multiline", "hidden", "oauth", "date"}
)
SUPPORT_LOCATIONS = frozenset(
    {
        "ticket_sidebar",
        "new_ticket_sidebar",
        "user_sidebar",
        "organization_sidebar",
        "top_bar",
        "nav_bar",
        "ticket_editor",
        "background",
        "modal",
    }
)
SETTING = re.compile(r"\{\{\s*setting\.([A-Za-z0-9_]+)\s*\}\}")


# -- validation ------------------------------------------------------------------------------------


def validate_app(app_dir: Path = APP_DIR) -> list[str]:
    """Every problem Zendesk (or our sidebar's security) would have with the app; empty when none."""
    problems: list[str] = []
    manifest_path = app_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [f"manifest.json: cannot read: {exc}"]
    if not isinstance(manifest, dict):
        return ["manifest.json: not a JSON object"]
    problems += _manifest_problems(manifest)
    parameters = [p for p in manifest.get("parameters") or [] if isinstance(p, dict)]
    locale = manifest.get("defaultLocale")
    if isinstance(locale, str) and locale:
        problems += _translation_problems(app_dir / "translations" / f"{locale}.json", parameters)
    for name in REQUIRED_FILES:
        if not (app_dir / name).is_file():
            problems.append(f"{name}: missing (Zendesk requires it)")
    for name, size in LOGO_SIZES.items():
        path = app_dir / name
        if path.is_file():
            dims = png_size(path.read_bytes())
            if dims is None:
                problems.append(f"{name}: not a PNG")
            elif dims != (size, size):
                problems.append(f"{name}: {dims[0]}x{dims[1]}, expected {size}x{size}")
    return problems


def _manifest_problems(m: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("name", "defaultLocale", "version"):
        if not isinstance(m.get(key), str) or not m[key].strip():
            problems.append(f"manifest.json: {key} must be a non-empty string")
    author = m.get("author")
    if not isinstance(author, dict) or not author.get("name") or "@" not in str(author.get("email", "")):
        problems.append("manifest.json: author needs a name and an email")
    if m.get("frameworkVersion") != "2.0":
        problems.append('manifest.json: frameworkVersion must be "2.0" (the iframe framework)')
    if not isinstance(m.get("private"), bool):
        problems.append("manifest.json: private must be true or false")
    # Without signed URLs the first load carries no JWT, and the sidebar refuses every agent.
    if m.get("signedUrls") is not True:
        problems.append("manifest.json: signedUrls must be true (the sidebar verifies Zendesk's JWT)")
    names = set()
    for i, p in enumerate(m.get("parameters") or []):
        if not isinstance(p, dict) or not re.fullmatch(r"[a-z][a-z0-9_]*", str(p.get("name", ""))):
            problems.append(f"manifest.json: parameters[{i}] needs a lower-case name")
            continue
        if p.get("type", "text") not in PARAMETER_TYPES:
            problems.append(f"manifest.json: parameter {p['name']}: unknown type {p.get('type')!r}")
        if p["name"] in names:
            problems.append(f"manifest.json: parameter {p['name']} declared twice")
        names.add(p["name"])
    problems += _location_problems(m.get("location"), names)
    return problems


def _location_problems(location: Any, parameters: set[str]) -> list[str]:
    support = location.get("support") if isinstance(location, dict) else None
    if not isinstance(support, dict) or not support:
        return ["manifest.json: location.support must name where the app appears"]
    problems = []
    for name, spec in support.items():
        if name not in SUPPORT_LOCATIONS:
            problems.append(f"manifest.json: location.support.{name}: unknown location")
        url = spec if isinstance(spec, str) else spec.get("url") if isinstance(spec, dict) else None
        if not isinstance(url, str) or not url:
            problems.append(f"manifest.json: location.support.{name} needs a url")
            continue
        for setting in SETTING.findall(url):
            if setting not in parameters:
                problems.append(f"manifest.json: location.support.{name} uses undeclared setting {setting}")
        if not (url.startswith(("https://", "assets/")) or SETTING.match(url)):
            problems.append(
                f"manifest.json: location.support.{name}: url must be https, assets/ or a setting"
            )
    sidebar = support.get("ticket_sidebar")
    if not isinstance(sidebar, dict) or not str(sidebar.get("url", "")).endswith("/sidebar"):
        problems.append(
            "manifest.json: location.support.ticket_sidebar.url must point at the service's /sidebar"
        )
    return problems


def _translation_problems(path: Path, parameters: list[dict[str, Any]]) -> list[str]:
    rel = f"translations/{path.name}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{rel}: missing (the default locale's translations are required)"]
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{rel}: cannot read: {exc}"]
    app = data.get("app") if isinstance(data, dict) else None
    if not isinstance(app, dict):
        return [f'{rel}: needs an "app" object']
    labels = app.get("parameters") if isinstance(app.get("parameters"), dict) else {}
    return [
        f"{rel}: app.parameters.{p['name']}.label missing (the admin sees it when installing)"
        for p in parameters
        if not isinstance(labels.get(p.get("name")), dict) or not labels[p["name"]].get("label")
    ]


def png_size(data: bytes) -> tuple[int, int] | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# -- packaging -------------------------------------------------------------------------------------


def package(app_dir: Path = APP_DIR, out: Path = DEFAULT_ZIP) -> Path:
    """The zip Zendesk uploads: manifest.json at its root, with translations/ and assets/."""
    problems = validate_app(app_dir)
    if problems:
        raise SystemExit("the app is not valid:\n  " + "\n  ".join(problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(
        p
        for p in app_dir.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(app_dir).parts)
        and p.name != "README.md"
    )
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            # A fixed timestamp: the same sources give the same zip.
            info = zipfile.ZipInfo(path.relative_to(app_dir).as_posix(), date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return out


# -- vendoring -------------------------------------------------------------------------------------


def vendored(node_modules: Path = NODE_MODULES) -> dict[str, str]:
    """The files of connector/static/sidebar/vendor/, built from node_modules."""
    return {
        "garden.css": garden_css(node_modules),
        "zaf_sdk.js": zaf_bundle(node_modules),
        "NOTICE.md": notice(node_modules),
    }


def _version(package_dir: Path) -> str:
    return str(json.loads((package_dir / "package.json").read_text(encoding="utf-8"))["version"])


def garden_css(node_modules: Path) -> str:
    parts = ["/* Zendesk Garden CSS (Apache-2.0), vendored by deploy/zendesk/build_app.py: do not edit. */\n"]
    for name in GARDEN_CSS:
        package_dir = node_modules / "@zendeskgarden" / name
        parts.append(f"\n/* @zendeskgarden/{name} {_version(package_dir)} */\n")
        parts.append((package_dir / "dist" / "index.css").read_text(encoding="utf-8").strip() + "\n")
    return "".join(parts)


def zaf_bundle(node_modules: Path) -> str:
    """The SDK's CommonJS modules in one script; a twenty-line loader stands in for browserify."""
    sdk = node_modules / SDK_PACKAGE
    modules = []
    for name in SDK_MODULES:
        source = (sdk / "lib" / f"{name}.js").read_text(encoding="utf-8")
        modules.append(f"  {json.dumps(name)}: function (module, exports, require) {{\n{source}\n  }}")
    return (
        f"/*! {SDK_PACKAGE} {_version(sdk)} (Apache-2.0; Native Promise Only: MIT), bundled by "
        "deploy/zendesk/build_app.py: do not edit. */\n"
        "(function (global) {\n"
        "  'use strict';\n"
        "  var definitions = {\n" + ",\n".join(modules) + "\n  };\n"
        "  var cache = {};\n"
        "  function resolve(from, request) {\n"
        "    var parts = from.split('/').slice(0, -1).concat(request.split('/')), out = [];\n"
        "    for (var i = 0; i < parts.length; i++) {\n"
        "      if (parts[i] === '..') { out.pop(); }\n"
        "      else if (parts[i] !== '.' && parts[i]) { out.push(parts[i]); }\n"
        "    }\n"
        "    return out.join('/').replace(/\\.js$/, '');\n"
        "  }\n"
        "  function load(name) {\n"
        "    if (cache[name]) { return cache[name].exports; }\n"
        "    if (!definitions[name]) { throw new Error('zaf_sdk bundle: no module ' + name); }\n"
        "    var module = cache[name] = { exports: {} };\n"
        "    definitions[name].call(global, module, module.exports, function (request) {\n"
        "      return load(resolve(name, request));\n"
        "    });\n"
        "    return module.exports;\n"
        "  }\n"
        "  global.ZAFClient = load('index');\n"
        "}(window));\n"
    )


def notice(node_modules: Path) -> str:
    lines = [
        "# Vendored front-end assets",
        "",
        "Built by `deploy/zendesk/build_app.py vendor` from the npm packages in `package.json`;",
        "do not edit.",
        "",
        f"- `zaf_sdk.js`: `{SDK_PACKAGE}` {_version(node_modules / SDK_PACKAGE)}, Apache-2.0,"
        " Copyright Zendesk; includes Native Promise Only (MIT, Kyle Simpson)",
    ]
    lines += [
        f"- `garden.css`: `@zendeskgarden/{name}` {_version(node_modules / '@zendeskgarden' / name)},"
        " Apache-2.0, Copyright Zendesk"
        for name in GARDEN_CSS
    ]
    return "\n".join(lines) + "\n"


def write_vendor(node_modules: Path = NODE_MODULES, target: Path = VENDOR_DIR) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in vendored(node_modules).items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_vendor(node_modules: Path = NODE_MODULES, target: Path = VENDOR_DIR) -> list[str]:
    """Vendored files that differ from what node_modules would give."""
    stale = []
    for name, text in vendored(node_modules).items():
        path = target / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path.relative_to(ROOT)))
    return stale


# -- logos -----------------------------------------------------------------------------------------


def logo_png(size: int) -> bytes:
    """Garden blue with a white upward chevron ("escalate"), drawn without an imaging library."""
    blue, white = (0x1F, 0x73, 0xB7), (0xFF, 0xFF, 0xFF)
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            u, v = (x + 0.5) / size - 0.5, (y + 0.5) / size - 0.5
            # Two strokes meeting at the top: |v + 0.12 + 0.9|u|| small, within the chevron's reach.
            on = abs(u) <= 0.3 and abs(v + 0.12 - 0.9 * abs(u)) <= 0.075
            row += bytes(white if on else blue)
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def write_logos(app_dir: Path = APP_DIR) -> None:
    for name, size in LOGO_SIZES.items():
        (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (app_dir / name).write_bytes(logo_png(size))


# -- command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("vendor", "check", "package", "logos"))
    parser.add_argument("--out", type=Path, default=DEFAULT_ZIP, help="zip to write (package)")
    args = parser.parse_args(argv)
    if args.command == "logos":
        write_logos()
        return 0
    if args.command == "vendor":
        if not NODE_MODULES.is_dir():
            print("node_modules is missing: run `npm ci` at the repository root first", file=sys.stderr)
            return 2
        for path in write_vendor():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    problems = validate_app()
    if args.command == "check":
        if NODE_MODULES.is_dir():
            problems += [f"{name}: out of date; run build_app.py vendor" for name in stale_vendor()]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print(f"wrote {package(out=args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
