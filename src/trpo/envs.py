"""Environments: building vector envs, encoding observations, sending actions.

Vector envs use Gymnasium's SAME_STEP autoreset: the step that ends an episode returns the
reset observation and puts the real final observation in ``info["final_obs"]``. With the
default NEXT_STEP mode the step after an episode ends would be a fake transition (an
ignored action and a reset); SAME_STEP never produces one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from trpo.encoders import ObservationEncoder
from trpo.policies import UnsupportedSpaceError, action_kind

EnvSource = str | gym.Env | Callable[[], gym.Env]


class EnvError(ValueError):
    """The environment cannot be built or returned something training cannot use."""


def env_factory(
    source: EnvSource,
    env_kwargs: dict[str, Any] | None = None,
    modules: tuple[str, ...] | list[str] = (),
    training: bool = True,
) -> Callable[[], gym.Env]:
    """A zero-argument callable building one env from an id, a factory or an env instance.

    An id may name a module to import first, as `gymnasium.make` reads it
    (``mypkg.envs:MyEnv-v0``); ``modules`` (`Config.env_modules`) are imported here and
    again in the callable, so they register their envs in every process that builds one
    (async subprocesses, Ray actors, grid workers). An env instance can back only one env
    copy (`copy_factory` makes faithful copies of one that has a registered spec).
    Atari ids get the standard preprocessing (`trpo.atari`; ``training=False`` for
    evaluation: whole games, raw scores) and MinAtar ids a time limit.
    """
    kwargs = dict(env_kwargs or {})
    modules = tuple(modules)
    if isinstance(source, str):
        check_env_id(source, modules)

        def make() -> gym.Env:
            import_env_modules(modules)
            register_family(source)
            try:
                return make_env(source, kwargs, training)
            except gym.error.DependencyNotInstalled as err:
                reason = str(err).rstrip(".")
                raise EnvError(
                    f"{source} cannot be built: {reason}.{family_hint(source)}"
                ) from None
            except (TypeError, ValueError) as err:
                raise EnvError(
                    f"{source} does not accept these env keyword arguments {kwargs}: {err}"
                ) from None

        make.env_id = source  # type: ignore[attr-defined] - lets check_env name a kwarg
        return make
    import_env_modules(modules)
    if isinstance(source, gym.Env):
        used = []

        def reuse() -> gym.Env:
            if used:
                raise EnvError(
                    "an env instance can back only one env copy: pass an env id or a "
                    "zero-argument factory to use n_envs > 1 or periodic evaluation"
                )
            used.append(True)
            return source

        return reuse
    if callable(source):
        if not modules:
            return source

        def build() -> gym.Env:
            import_env_modules(modules)
            return source()

        return build
    raise EnvError(f"expected a Gymnasium env id, env instance or factory, got {source!r}")


def copy_factory(env: gym.Env) -> Callable[[], gym.Env] | None:
    """A factory of faithful copies of the env instance ``env``, or None when it has none.

    A copy is what ``gymnasium.make(env.spec)`` builds. That is faithful when ``env`` came
    from `gymnasium.make` (it has a spec), every wrapper put on it since records its
    constructor arguments (Gymnasium's own wrappers do; a wrapper of yours that does not
    inherit `gymnasium.utils.RecordConstructorArgs` leaves its arguments unknown), and
    the copy has ``env``'s spaces. An env made by calling its class has no spec, so it
    cannot be copied. What was changed on the instance after it was made (attributes set
    by hand) is not seen, and so not copied.
    """
    spec = env.spec
    if spec is None or any(w.kwargs is None for w in spec.additional_wrappers):
        return None
    try:
        probe = gym.make(spec)
    except Exception:  # noqa: BLE001 - any failure means: no faithful copy
        return None
    same = (
        probe.observation_space == env.observation_space and probe.action_space == env.action_space
    )
    probe.close()
    return (lambda: gym.make(spec)) if same else None


def import_env_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import the modules that register a user's envs (`Config.env_modules`)."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise EnvError(
                f"cannot import env module '{module}' (from --import or env_modules): {err}"
            ) from None


_FAMILIES = {
    # namespace: (the module that registers its envs, the trpo extra, the family's name)
    "ALE": ("ale_py", "atari", "Atari"),
    "MinAtar": ("minatar.gym", "minatar", "MinAtar"),
    "MiniGrid": ("minigrid", "minigrid", "MiniGrid"),  # ids MiniGrid-*, BabyAI-*: no namespace
}
_BOX2D = ("LunarLander", "BipedalWalker", "CarRacing")
_MUJOCO = (
    "Hopper",
    "Walker2d",
    "HalfCheetah",
    "Ant",
    "Humanoid",
    "HumanoidStandup",
    "Swimmer",
    "Reacher",
    "Pusher",
    "InvertedPendulum",
    "InvertedDoublePendulum",
)


def make_env(env_id: str, kwargs: dict[str, Any], training: bool = True) -> gym.Env:
    """`gymnasium.make`, with the preprocessing Atari and MinAtar ids need (`trpo.atari`)."""
    from trpo import atari

    if atari.is_minatar_id(env_id):
        return atari.make_minatar_env(env_id, **kwargs)
    if atari.is_atari_id(env_id):
        settings, make_kwargs = atari.split_settings(kwargs)
        return atari.make_atari_env(env_id, settings, training, **make_kwargs)
    return gym.make(env_id, **kwargs)


def register_family(env_id: str) -> None:
    """Register the envs of ``env_id``'s family where Gymnasium needs a call for it:
    ``ALE/`` ids (``gym.register_envs(ale_py)``) and ``MinAtar/`` ids
    (``minatar.gym.register_envs()``); MiniGrid's and BabyAI's register when ``minigrid`` is
    imported. Nothing for other ids, or once registered."""
    env_id = env_id.rpartition(":")[2]
    namespace = _family(env_id)
    if namespace is None or env_id in gym.registry:
        return
    module_name, extra, family = _FAMILIES[namespace]
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EnvError(
            f"{env_id} is in the {family} family, registered by {module_name}: "
            f"pip install 'trpo[{extra}]'"
        ) from None
    if namespace == "ALE":
        gym.register_envs(module)
    elif namespace == "MinAtar":
        module.register_envs()


def _family(env_id: str) -> str | None:
    """The `_FAMILIES` key of ``env_id``: its namespace, or MiniGrid's id prefixes."""
    if "/" in env_id:
        namespace = env_id.partition("/")[0]
        return namespace if namespace in _FAMILIES else None
    return "MiniGrid" if env_id.startswith(("MiniGrid-", "BabyAI-")) else None


def family_hint(env_id: str) -> str:
    """' ... pip install trpo[EXTRA]' for ids of the env families an extra provides."""
    env_id = env_id.rpartition(":")[2]
    namespace = _family(env_id)
    if namespace is not None:
        module_name, extra, family = _FAMILIES[namespace]
        return f" {family} envs need `pip install 'trpo[{extra}]'` ({module_name})."
    name = env_id.split("-v")[0]
    if name in _BOX2D:
        return " Box2D envs need `pip install 'trpo[box2d]'`."
    if name in _MUJOCO:
        return " MuJoCo envs need `pip install 'trpo[mujoco]'`."
    return ""


def check_env_id(env_id: str, modules: tuple[str, ...] | list[str] = ()) -> None:
    """Refuse an unknown env id, naming close ids and the extra that provides its family.
    ``module:EnvId`` (Gymnasium's syntax) imports ``module`` first, as do ``modules``."""
    import_env_modules(modules)
    module, _, name = env_id.rpartition(":")
    if module:
        import_env_modules([module])
    register_family(name)
    if name in gym.registry:
        return
    family = family_hint(name)
    hint = did_you_mean(name, gym.registry) + family
    if not module and not modules and not family:
        hint += (
            " Your own env: register it in a module and pass `--import MODULE` (or `MODULE:EnvId`)."
        )
    raise EnvError(f"unknown environment id '{env_id}'.{hint}")


def did_you_mean(name: str, known: Any) -> str:
    """' Did you mean: a, b?' naming the entries of ``known`` closest to ``name``, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def make_vector_env(
    factory: Callable[[], gym.Env] | list[Callable[[], gym.Env]],
    n_envs: int,
    mode: str = "sync",
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> VectorEnv:
    """``n_envs`` copies with SAME_STEP autoreset: Gymnasium's sync or async vector env over
    ``factory`` (or one factory per copy, a list), or (mode ``envpool``) EnvPool's task
    ``env_id``."""
    fns = list(factory) if isinstance(factory, list) else [factory] * n_envs
    try:
        if mode == "envpool":
            if env_id is None:
                raise EnvError(
                    "vec=envpool builds its envs from a task id: pass an env id that EnvPool "
                    "provides, not an env object or factory"
                )
            from trpo.envpool import EnvPoolVectorEnv

            envs = EnvPoolVectorEnv(env_id, n_envs, env_kwargs or {})
        elif mode == "async":
            shielded = [_IgnoreSignals(fn) for fn in fns]
            envs = _AsyncEnvs(shielded, autoreset_mode=AutoresetMode.SAME_STEP)
        else:
            envs = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    except EnvError:
        raise
    except (TypeError, gym.error.Error) as err:
        raise EnvError(f"could not build the environment: {err}") from None
    check_spaces(envs.single_observation_space, envs.single_action_space)
    return envs


class _IgnoreSignals:
    """An env factory for AsyncVectorEnv's subprocesses that first makes the subprocess
    ignore SIGINT and SIGTERM: they reach the whole process group (Ctrl-C) or job
    (SLURM), and the training process, which handles them, closes its envs itself."""

    def __init__(self, factory: Callable[[], gym.Env]):
        self.factory = factory
        self.parent = os.getpid()

    def __call__(self) -> gym.Env:
        if os.getpid() != self.parent:  # AsyncVectorEnv also builds one env in the parent
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return self.factory()


class _AsyncEnvs(AsyncVectorEnv):
    """AsyncVectorEnv whose close survives a step or reset abandoned midway (a SIGTERM
    raising in the parent, a second Ctrl-C): a command then went to only some workers, or
    only some replies were read, so a polite close would take a stale reply for the
    worker's goodbye and close the pipe while the worker still writes to it (a
    BrokenPipeError traceback from each worker). Such workers are killed instead: they
    ignore SIGTERM, and their envs hold nothing the abandoned iteration could still use."""

    _in_call = False

    def step(self, actions):
        self._in_call = True
        result = super().step(actions)
        self._in_call = False
        return result

    def reset(self, *, seed=None, options=None):
        self._in_call = True
        result = super().reset(seed=seed, options=options)
        self._in_call = False
        return result

    def close_extras(self, timeout: float | None = None, terminate: bool = False) -> None:
        if not self._in_call:
            super().close_extras(timeout, terminate)
            return
        for process in self.processes:
            process.kill()
            process.join()
        for pipe in self.parent_pipes:
            pipe.close()


def check_spaces(obs_space: gym.Space, action_space: gym.Space) -> None:
    try:
        ObservationEncoder(obs_space)
        action_kind(action_space)
    except UnsupportedSpaceError as err:
        raise EnvError(str(err)) from None


class ActionAdapter:
    """Turns policy samples (as numpy) into what the env accepts.

    Gaussian samples are clipped to the Box's finite bounds (only here, never in the batch);
    Discrete/MultiDiscrete samples are shifted by the space's ``start``.
    """

    def __init__(self, space: gym.Space):
        self.kind = action_kind(space)
        self.space = space
        if self.kind == "box":
            self.low = np.where(np.isfinite(space.low), space.low, -np.inf).astype(space.dtype)
            self.high = np.where(np.isfinite(space.high), space.high, np.inf).astype(space.dtype)
            self.clip = bool(np.isfinite(space.low).any() or np.isfinite(space.high).any())
        elif self.kind in ("discrete", "multidiscrete"):
            self.start = np.asarray(space.start, dtype=np.int64)

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        if self.kind == "box":
            actions = actions.reshape((-1, *self.space.shape)).astype(self.space.dtype)
            return np.clip(actions, self.low, self.high) if self.clip else actions
        if self.kind == "discrete":
            return actions + self.start
        if self.kind == "multidiscrete":
            return actions.reshape((-1, *self.space.shape)) + self.start
        return actions.reshape((-1, *self.space.shape)).astype(self.space.dtype)


def check_finite(name: str, values: np.ndarray, env_id: str, step: int) -> None:
    if not np.all(np.isfinite(values)):
        raise EnvError(
            f"{env_id} returned a non-finite {name} (NaN or Inf) at environment step {step}. "
            "Fix the environment, or wrap it to clip or replace such values."
        )


def check_env(factory: Callable[[], gym.Env], env_kwargs: dict[str, Any] | None = None) -> None:
    """Build one env with ``factory``, reset it and step it once with a fixed action, so
    that an env that cannot run (a bad keyword argument, an assertion in its constructor,
    a NaN physics constant) is refused before a run writes anything. Raises `EnvError`
    naming the keyword argument responsible where dropping it alone makes the probe pass.
    Never call this on a user's env instance: it would step the very env training uses."""
    kwargs = dict(env_kwargs or {})
    with warnings.catch_warnings():  # the probe's own warnings would repeat in training
        warnings.simplefilter("ignore")
        problem = _probe(factory)
    if problem is None:
        return
    given = f" with env keyword arguments {kwargs}" if kwargs else ""
    culprit = _culprit(factory, kwargs) if kwargs else None
    blame = f" (the keyword argument {culprit}={kwargs[culprit]!r} is the cause)" if culprit else ""
    raise EnvError(f"the environment cannot run{given}{blame}: {problem}")


def _probe(factory: Callable[[], gym.Env]) -> str | None:
    """None when one env builds, resets and steps with finite values; else what failed."""
    env = None
    try:
        env = factory()
        obs, _ = env.reset(seed=0)
        check_spaces(env.observation_space, env.action_space)
        if not np.all(np.isfinite(ObservationEncoder(env.observation_space)([obs]))):
            return "reset returned a non-finite observation (NaN or Inf)"
        env.action_space.seed(0)
        obs, reward, *_ = env.step(env.action_space.sample())
        if not np.all(np.isfinite(ObservationEncoder(env.observation_space)([obs]))):
            return "its first step returned a non-finite observation (NaN or Inf)"
        if not np.isfinite(float(reward)):
            return f"its first step returned a non-finite reward ({reward})"
    except Exception as err:  # noqa: BLE001 - any failure of the user's env is reported
        if isinstance(err, EnvError):
            return str(err)
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    finally:
        if env is not None:
            with contextlib.suppress(Exception):  # closing a broken env may fail too
                env.close()
    return None


def _culprit(factory: Callable[[], gym.Env], kwargs: dict[str, Any]) -> str | None:
    """The one keyword argument whose removal alone lets an env id's env run."""
    source = getattr(factory, "env_id", None)
    if source is None:
        return None
    for key in kwargs:
        rest = {k: v for k, v in kwargs.items() if k != key}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if _probe(env_factory(source, rest)) is None:
                return key
    return None
