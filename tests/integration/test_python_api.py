"""The README's "Python API" example runs as written (issue 18), and the API raises the project's errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("### Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})  # noqa: S102 - the documented example itself
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"^[0-9.]+ \[\('\w+', [0-9.]+\), \('\w+', [0-9.]+\)\]$", printed), printed
    assert (tmp_path / "registry" / "shapes" / "1" / "saved_model.pb").is_file()


def test_bad_input_raises_the_projects_errors(shapes_run, tmp_path):
    import imgclf
    from imgclf.errors import ConfigError, DatasetError, ImageDecodeError, RunDirError

    with pytest.raises(ConfigError, match="invalid epochs"):
        imgclf.train(tmp_path, out=tmp_path / "run", epochs=0)
    with pytest.raises(DatasetError, match="does not exist"):
        imgclf.train(tmp_path / "nope", out=tmp_path / "run2", model="small_cnn", report=None)
    with pytest.raises(RunDirError):
        imgclf.evaluate(tmp_path)
    registry = tmp_path / "registry"
    registry.mkdir()
    model = imgclf.load(imgclf.export(shapes_run, registry=registry, name="shapes"))
    assert model.classes == ["circle", "square", "triangle"]
    from PIL import Image

    picture = Image.new("RGB", (40, 40), (200, 30, 30))
    assert [p.source for p in model.predict([picture, picture])] == ["image 1", "image 2"]
    with pytest.raises(ImageDecodeError, match="image 2: "):
        model.predict([picture, b"not an image"])
    with pytest.raises(ImageDecodeError, match="cannot read"):
        model.predict([tmp_path / "missing.jpg"])
    with pytest.raises(ConfigError, match="expected a path, bytes or a PIL image"):
        model.predict([42])
