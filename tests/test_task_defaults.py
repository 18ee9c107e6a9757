"""Every task's `mgdl fit|compare <task>` options default to what a config file of that
task gets: one source of defaults (the task table and the config), read by both."""

import dataclasses

import pytest
import typer.main

from multigrade.cli import app
from multigrade.experiments import ProblemConfig, tasks


def _commands():
    root = typer.main.get_command(app)
    for command in ("fit", "compare"):
        group = root.commands[command]
        for name, cmd in group.commands.items():
            yield command, name, cmd


def test_every_task_with_an_image_has_both_commands():
    made = {(c, n) for c, n, _ in _commands()}
    for name in tasks.names(image=True):
        assert ("fit", name) in made and ("compare", name) in made
    for c, n, cmd in _commands():  # each command's help is its task's line
        task = tasks.get(n)
        assert (cmd.help or "").split()[:3] == (task.summary if c == "fit" else
                                                task.compare or task.summary).split()[:3]


@pytest.mark.parametrize("task", tasks.names(image=True))
def test_cli_defaults_are_the_configs(task):
    config = ProblemConfig(task=task)
    fields = {f.name for f in dataclasses.fields(ProblemConfig)}
    own = set() if config.options is None else {f.name for f in dataclasses.fields(
        config.options)}
    root = typer.main.get_command(app)
    for command in ("fit", "compare"):
        cmd = root.commands[command].commands[task]
        checked = 0
        for param in cmd.params:
            if param.name in fields and param.name != "image" and param.default is not None:
                value = getattr(config, param.name)
                assert param.default == value, (command, task, param.name)
                checked += 1
            elif config.options is not None and param.name in own:  # [problem.options]
                assert param.default == getattr(config.options, param.name), (task, param.name)
                checked += 1
        # the observation's own options are among them (inpaint's σ was 5 here, 10 there)
        assert checked >= (0 if task == "regression" else 2), (command, task)


def test_inpaint_and_superres_sigma_is_five_in_both_places():
    assert ProblemConfig(task="inpaint").sigma == ProblemConfig(task="superres").sigma == 5.0
    assert ProblemConfig(task="denoise").sigma == 10.0
    assert ProblemConfig(task="inpaint", sigma=12.0).sigma == 12.0


def test_a_tasks_own_options_reach_its_config(tmp_path):
    """`--factor 3` lands in `[problem.options]`, and a config file's table reads back."""
    from multigrade.cli.tasks import _config

    cfg = _config("fit", "superres", {"image": "camera", "factor": 3, "kernel": "gaussian",
                                      "sigma": 7.0, "lr": "1e-3", "optimizer": "adam"})
    assert (cfg.problem.options.factor, cfg.problem.options.kernel) == (3, "gaussian")
    assert cfg.problem.sigma == 7.0


@pytest.mark.parametrize("command", ["fit", "compare"])
@pytest.mark.parametrize("task", tasks.names(image=True))
def test_a_command_with_no_options_is_a_config_file_with_only_its_task(command, task):
    """Every option at its default gives the config a file holding only `task` (and the
    required image) gives: problem, model and train sections alike. The one difference is
    meant: unset, --lr/--beta/--lam fill `[methods]` with the authors' per-method values
    (SPEC §3), which a file states explicitly."""
    from multigrade.cli.tasks import _config
    from multigrade.experiments import RunConfig
    from multigrade.experiments.config import MethodsConfig

    cmd = typer.main.get_command(app).commands[command].commands[task]
    opts = {p.name: p.default for p in cmd.params if p.name not in ("out", "overwrite", "quiet")}
    opts["image"] = "camera"
    cli = _config(command, task, opts)
    file = RunConfig(command=command, problem=ProblemConfig(task=task, image="camera"),
                     x64=cli.x64)
    assert dataclasses.replace(cli, methods=MethodsConfig()) == file
    assert file.model.layers_per_grade == (3 if tasks.get(task).restoration else 2)
