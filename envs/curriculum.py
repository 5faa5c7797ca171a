"""Start states that make a hard task easier to learn: training episodes of a Fetch env that begin with the
object held in the gripper (the curriculum of the HER paper for PickAndPlace, Andrychowicz et al. 2017)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from her import validation

OBJECT_JOINT = "object0:joint"
OBJECT_GEOM = "object0"
GRIP_SITE = "robot0:grip"
FINGER_JOINTS = ("robot0:l_gripper_finger_joint", "robot0:r_gripper_finger_joint")


class ObjectInGripper(gym.Wrapper):
    """With probability ``probability`` per episode, ``reset`` moves the object into the gripper: the object's
    centre to the grip site (between the fingers), at rest, and both fingers closed to the object's half-width,
    touching its sides. An action that keeps closing the gripper (its last entry < 0) then holds and carries
    the object; an opening one drops it.

    The draw comes from the env's own ``np_random`` after the env's reset (its object and goal are drawn as
    usual), so a seeded env repeats its episodes; with ``probability=0`` nothing is drawn and the episodes are
    the plain env's. Wrap only the training env: evaluation measures the task itself.

    Works on gymnasium-robotics' MuJoCo Fetch envs with an object and a free gripper (FetchPickAndPlace); it
    moves the simulation state through their MuJoCo bindings (``unwrapped.model``/``.data``) and recomputes
    the observation with ``unwrapped._get_obs()``, as the env's own ``reset`` does.

    Args:
        env: the env to wrap.
        probability: chance that an episode starts with the object in the gripper, in ``[0, 1]``.
    """

    def __init__(self, env: gym.Env, probability: float) -> None:
        super().__init__(env)
        self.probability = validation.real_in_range("object_in_gripper", probability, 0.0, 1.0)
        problem = _cannot_hold_its_object(env)
        if problem is not None and self.probability > 0:
            raise validation.OptionError("object_in_gripper", probability, "0 for this env", problem)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self.probability > 0 and self.unwrapped.np_random.random() < self.probability:
            obs = self.put_object_in_gripper()
        return obs, info

    def put_object_in_gripper(self) -> dict[str, np.ndarray]:
        """Move the object to the grip site and close the fingers on it; returns the new observation."""
        import mujoco
        from gymnasium_robotics.utils import mujoco_utils

        env = self.unwrapped
        model, data = env.model, env.data  # type: ignore[attr-defined]
        qpos = mujoco_utils.get_joint_qpos(model, data, OBJECT_JOINT).copy()  # [x, y, z, quaternion]
        qpos[:3] = mujoco_utils.get_site_xpos(model, data, GRIP_SITE)
        mujoco_utils.set_joint_qpos(model, data, OBJECT_JOINT, qpos)
        mujoco_utils.set_joint_qvel(model, data, OBJECT_JOINT, np.zeros(6))
        # The fingers close along the world y axis (the gripper's fixed orientation), each finger joint's value
        # being its opening: the object's half-width along y makes both touch it (within the fingers' 1 mm pad).
        half_width = float(model.geom_size[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, OBJECT_GEOM)][1])
        for name in FINGER_JOINTS:
            low, high = model.jnt_range[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]
            mujoco_utils.set_joint_qpos(model, data, name, np.clip(half_width, low, high))
            mujoco_utils.set_joint_qvel(model, data, name, 0.0)
        mujoco.mj_forward(model, data)
        return env._get_obs()  # type: ignore[attr-defined]


def _cannot_hold_its_object(env: gym.Env) -> str | None:
    """Why the gripper of ``env`` cannot start an episode holding an object, or ``None``."""
    base = env.unwrapped
    name = env.spec.id if env.spec is not None else type(base).__name__
    if not getattr(base, "has_object", False):
        return f"{name} has no object to hold (a Fetch env with an object and a free gripper has: FetchPickAndPlace)"
    if getattr(base, "block_gripper", True):
        return f"{name}'s gripper is blocked (closed): it cannot hold the object (FetchPickAndPlace's can)"
    if not hasattr(base, "model") or not hasattr(base, "data"):
        return f"{name} is not a MuJoCo-bindings Fetch env (model/data): use a -v4 id"
    return None
