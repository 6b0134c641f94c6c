"""build.py refuses runtime files whose sha256 differs from the pins (no browser needed)."""

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

import build

LOCK = json.loads((build.ROOT / "node_modules/pyodide/pyodide-lock.json").read_text())


def seeded_cache(tmp_path):
    """A cache holding the real (verified) runtime files, so a build needs no network."""
    cache = tmp_path / "cache"
    for sub in ("pyodide", "wheels"):
        source = build.ROOT / ".cache" / sub
        if not source.is_dir():
            pytest.skip(f"{source} is empty: run `python build.py build` once first")
        shutil.copytree(source, cache / sub)
    return cache


def test_corrupted_pyodide_wheel_fails_the_build_naming_file_and_both_hashes(tmp_path):
    cache = seeded_cache(tmp_path)
    numpy_entry = LOCK["packages"]["numpy"]
    tampered = cache / "pyodide" / numpy_entry["file_name"]
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))

    completed = subprocess.run(
        [sys.executable, str(build.ROOT / "build.py"), "build", "--no-cdn", "--cache", str(cache), "--out", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 1
    assert numpy_entry["file_name"] in completed.stderr
    assert numpy_entry["sha256"] in completed.stderr  # expected, from the official lock
    assert hashlib.sha256(bytes(data)).hexdigest() in completed.stderr  # received
    assert not (tmp_path / "dist").exists()


def test_corrupted_pypi_wheel_is_refused(tmp_path):
    cache = seeded_cache(tmp_path)
    name = "pydicom-3.0.1-py3-none-any.whl"
    (cache / "wheels" / name).write_bytes(b"not the pydicom wheel")
    with pytest.raises(build.BuildError) as caught:
        build.build(tmp_path / "dist", cache_dir=cache, use_cdn=False)
    message = str(caught.value)
    assert name in message
    assert "db32f78b2641bd7972096b8289111ddab01fb221610de8d7afa835eb938adb41" in message
    assert hashlib.sha256(b"not the pydicom wheel").hexdigest() in message


def test_mirror_copy_with_wrong_bytes_is_refused(tmp_path, monkeypatch):
    cache = seeded_cache(tmp_path)
    pillow = LOCK["packages"]["pillow"]["file_name"]
    (cache / "pyodide" / pillow).unlink()
    fake_mirror = tmp_path / "provisa" / build.PROVISA_WHEEL
    fake_mirror.parent.mkdir()
    with zipfile.ZipFile(fake_mirror, "w") as archive:
        archive.writestr(build.PROVISA_ASSET_DIR + pillow, b"pillow impostor")
    (cache / "provisa").mkdir()
    shutil.copy(fake_mirror, cache / "provisa" / build.PROVISA_WHEEL)
    with pytest.raises(build.BuildError, match=f"refusing {pillow} from {build.PROVISA_REQUIREMENT}"):
        build.build(tmp_path / "dist", cache_dir=cache, use_cdn=False)


def test_model_host_must_be_an_origin(tmp_path):
    with pytest.raises(build.BuildError, match="--model-host must be an origin like https://zenodo.org, received 'zenodo.org/records'"):
        build.build(tmp_path / "dist", model_host="zenodo.org/records")


def test_built_site_contains_the_verified_runtime(built_site):
    files = built_site.manifest["files"]
    for package in build.PYODIDE_PACKAGES:
        entry = LOCK["packages"][package]
        assert files[f"pyodide/{entry['file_name']}"]["sha256"] == entry["sha256"]
    for name, (_, sha256) in build.PYPI_WHEELS.items():
        assert files[f"wheels/{name}"]["sha256"] == sha256
    app_wheels = [path for path in files if path.startswith("wheels/vitrine-")]
    assert len(app_wheels) == 1
    with zipfile.ZipFile(built_site.dist / app_wheels[0]) as wheel:
        assert "app/service.py" in wheel.namelist() and "app/errors.py" in wheel.namelist()
    page = (built_site.dist / "index.html").read_text()
    assert "{{" not in page and built_site.model_origin in page
    assert not any(path.endswith(".map") for path in files)


def test_every_ui_module_is_shipped_to_the_micropython_ui(built_site):
    # ui/main.py imports its sibling modules by name; PyScript copies the files listed in
    # config/main.json into MicroPython's working directory. URLs there resolve against the
    # config file, so they must point one level up into ui/.
    config = json.loads((built_site.dist / "config/main.json").read_text())
    siblings = sorted(path.name for path in (build.ROOT / "ui").glob("*.py") if path.name != "main.py")
    assert config["files"] == {f"../ui/{name}": f"./{name}" for name in siblings}
    for name in siblings:
        assert (built_site.dist / "ui" / name).read_bytes() == (build.ROOT / "ui" / name).read_bytes()


PYTHON_312_MAGIC = 3531  # importlib's MAGIC_NUMBER for every CPython 3.12 release (Pyodide 0.27.7: 3.12.7)


def assert_unchecked_pyc_of(pyc: bytes, source: bytes, where: str) -> None:
    """``pyc`` is an unchecked hash-based 3.12 pyc (PEP 552) of exactly ``source``."""
    import _imp

    assert int.from_bytes(pyc[:2], "little") == PYTHON_312_MAGIC and pyc[2:4] == b"\r\n", where
    assert int.from_bytes(pyc[4:8], "little") == 0b01, f"{where}: not an unchecked hash-based pyc"
    # the hash is keyed with the magic number of the Python that wrote it (3.12), not ours
    assert pyc[8:16] == _imp.source_hash(int.from_bytes(pyc[:4], "little"), source), f"{where}: compiled from other source"


def test_shipped_bytecode_is_compiled_from_the_verified_sources(built_site):
    files = built_site.manifest["files"]
    official_stdlib = build.ROOT / "node_modules/pyodide/python_stdlib.zip"
    assert hashlib.sha256(official_stdlib.read_bytes()).hexdigest() == build.PYODIDE_CORE_SHA256["python_stdlib.zip"]
    with zipfile.ZipFile(official_stdlib) as official, zipfile.ZipFile(built_site.dist / "pyodide/python_stdlib.zip") as shipped:
        # every official entry, byte for byte; besides them only <module>.pyc of a module in it
        assert shipped.namelist()[:len(official.namelist())] == official.namelist()
        for name in official.namelist():
            assert shipped.read(name) == official.read(name), name
        added = shipped.namelist()[len(official.namelist()):]
        assert len(added) > 100 and {"asyncio/__init__.pyc", "json/decoder.pyc", "zipfile/__init__.pyc"} <= set(added)
        for name in added:
            source = official.read(name[:-1]).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            assert_unchecked_pyc_of(shipped.read(name), source, f"python_stdlib.zip {name}")
    shipped_lock = json.loads((built_site.dist / "pyodide/pyodide-lock.json").read_text())
    engine_config = json.loads((built_site.dist / "config/engine.json").read_text())
    wheels = {"numpy": built_site.dist / "pyodide" / LOCK["packages"]["numpy"]["file_name"],
              "pillow": built_site.dist / "pyodide" / LOCK["packages"]["pillow"]["file_name"],
              "vitrine": next((built_site.dist / "wheels").glob("vitrine-*.whl"))}
    for package, wheel_path in wheels.items():
        entry = shipped_lock["packages"][f"{package}-bytecode"]
        archive_path = (built_site.dist / "pyodide" / entry["file_name"]).resolve()
        # Pyodide fetches it with the lock's sha256 as integrity, like the wheel it belongs to
        assert entry["sha256"] == hashlib.sha256(archive_path.read_bytes()).hexdigest()
        assert files[archive_path.relative_to(built_site.dist).as_posix()]["sha256"] == entry["sha256"]
        with zipfile.ZipFile(wheel_path) as wheel, zipfile.ZipFile(archive_path) as archive:
            assert archive.namelist(), package
            for name in archive.namelist():
                folder, _, pyc_name = name.rpartition("/__pycache__/")
                module = f"{folder}/{pyc_name.split('.')[0]}.py"
                assert pyc_name.endswith(".cpython-312.pyc"), name
                assert_unchecked_pyc_of(archive.read(name), wheel.read(module), f"{archive_path.name} {name}")
        loaded_at = "packages" if package != "pillow" else "deferred_packages"
        assert package in engine_config[loaded_at] and f"{package}-bytecode" in engine_config[loaded_at]
    assert "pillow" not in engine_config["packages"]  # Pillow is installed after the boot (app.boot)
