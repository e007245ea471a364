"""Setup stays true: environment.yml mirrors pyproject, CI calls the README's
test command, and the README shows the two commands."""
import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

from minillm import ROOT


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["book"]) \
        | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    options = {d for d in pip if d.startswith("--")}
    assert set(pip) - {"-e ."} - options == wanted
    assert "python=3.11" in env["dependencies"]
    assert project["requires-python"].startswith(">=3.10")


def test_binder_and_conda_get_cpu_only_torch():
    # Binder builds from environment.yml; the CUDA wheel of torch would time it out.
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip
    assert not any((ROOT / d).exists() for d in ("binder", ".binder")), \
        "a binder/ folder would make repo2docker ignore environment.yml"


def test_no_hard_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    assert not [d for d in deps if "==" in d], "use lower bounds, not pins"


def test_ci_calls_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
