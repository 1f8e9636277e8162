"""The README's fresh-machine commands and CI stay in step."""

import re

from conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_ci_runs_the_readme_test_command():
    demo, tests = readme_commands()[:2]
    assert "sim2real run pipelines/demo.yaml" in demo
    assert "pytest" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_setup_script_installs_gl_libraries_and_test_extras():
    setup = (REPO / "tools" / "setup.sh").read_text()
    for pkg in ("libegl1", "libegl-mesa0", "libgl1-mesa-dri", "libosmesa6"):
        assert pkg in setup
    assert '".[test,ray]"' in setup  # ray: the --ray executor's tests (tests/test_ray_render.py) run in CI
