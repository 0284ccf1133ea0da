"""The internal state of running environments as JSON, so that a resumed run continues the
very episodes it was in (physics, time-limit counters, the env's random generator) rather
than resetting them, and continues bit for bit.

Supported: Gymnasium's classic-control envs (their state lives in plain attributes) and
its MuJoCo envs (MuJoCo's full integration state). For any other env `capture` returns
None and a resumed run starts new episodes there.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import SyncVectorEnv, VectorEnv

_PLAIN = (bool, int, float, str, type(None))
_MUJOCO_MODULE = "gymnasium.envs.mujoco"
_CLASSIC_MODULE = "gymnasium.envs.classic_control"


def capture_vector(envs: VectorEnv) -> list[dict[str, Any]] | None:
    """Every sub-env's state, or None when one of them cannot be captured (or the envs
    live in other processes, as with AsyncVectorEnv)."""
    if not isinstance(envs, SyncVectorEnv):
        return None
    states = [capture(env) for env in envs.envs]
    return None if any(state is None for state in states) else states


def restore_vector(envs: VectorEnv, states: list[dict[str, Any]] | None) -> bool:
    """Put every sub-env back into its saved state. False (nothing restored) when there
    is none, or when the vector env is another kind or size than the saved one."""
    if states is None or not isinstance(envs, SyncVectorEnv) or len(states) != len(envs.envs):
        return False
    for env, state in zip(envs.envs, states, strict=True):
        restore(env, state)
    return True


def capture(env: gym.Env) -> dict[str, Any] | None:
    unwrapped = env.unwrapped
    module = type(unwrapped).__module__
    if module.startswith(_MUJOCO_MODULE):
        physics = {"mujoco": _mujoco_state(unwrapped).tolist()}
    elif module.startswith(_CLASSIC_MODULE):
        physics = {}
    else:
        return None
    generator = unwrapped._np_random
    return {
        "env": f"{module}.{type(unwrapped).__qualname__}",
        "physics": physics,
        "attributes": _attributes(unwrapped),
        "wrappers": [_attributes(wrapper) for wrapper in _wrappers(env)],
        "np_random": None if generator is None else generator.bit_generator.state,
    }


def restore(env: gym.Env, state: dict[str, Any]) -> None:
    unwrapped = env.unwrapped
    name = f"{type(unwrapped).__module__}.{type(unwrapped).__qualname__}"
    if state["env"] != name:
        raise ValueError(f"saved state is of {state['env']}, not of {name}")
    wrappers = _wrappers(env)
    if len(wrappers) != len(state["wrappers"]):
        raise ValueError("saved state has another wrapper stack than the env")
    for target, attributes in [(unwrapped, state["attributes"]), *zip(wrappers, state["wrappers"])]:
        for key, value in attributes.items():
            setattr(target, key, _decode(value))
    if state["np_random"] is not None:
        generator = np.random.Generator(np.random.PCG64())
        generator.bit_generator.state = state["np_random"]
        unwrapped._np_random = generator
    if "mujoco" in state["physics"]:
        import mujoco

        saved = np.asarray(state["physics"]["mujoco"], np.float64)
        mujoco.mj_setState(unwrapped.model, unwrapped.data, saved, _mujoco_spec())


def _wrappers(env: gym.Env) -> list[gym.Wrapper]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def _attributes(obj: Any) -> dict[str, Any]:
    """The instance attributes that hold plain values or numeric arrays: the simulation
    state of classic-control envs and the counters of wrappers (e.g. TimeLimit's step
    count). Objects such as spaces, renderers and models are constructed, not state."""
    kept = {}
    for key, value in vars(obj).items():
        encoded = _encode(value)
        if encoded is not _SKIP:
            kept[key] = encoded
    return kept


_SKIP = object()


def _encode(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "biuf":
        return {"dtype": value.dtype.str, "shape": list(np.shape(value)), "data": value.tolist()}
    return _SKIP


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        array = np.asarray(value["data"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
        return array[()] if array.ndim == 0 else array
    return value


def _mujoco_state(unwrapped: Any) -> np.ndarray:
    import mujoco

    spec = _mujoco_spec()
    state = np.empty(mujoco.mj_stateSize(unwrapped.model, spec), np.float64)
    mujoco.mj_getState(unwrapped.model, unwrapped.data, state, spec)
    return state


def _mujoco_spec():
    import mujoco

    # Everything mj_step reads: time, positions, velocities, activations, the solver's
    # warm start, controls and applied forces; with it the next step is bit-identical.
    return mujoco.mjtState.mjSTATE_INTEGRATION
