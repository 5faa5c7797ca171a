"""Episodes of a trained policy rendered to frames, and frames written to an mp4 or to TensorBoard."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

PolicyFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (obs [n, o], goal [n, g]) -> actions [n, a]


@dataclass
class RenderedEpisode:
    """``frames``: ``[T + 1, H, W, 3]`` uint8 (the reset state, then one per step); ``success``: final-step
    ``is_success``; ``ret``: sum of rewards."""

    frames: np.ndarray
    success: float
    ret: float


def render_episodes(env: gym.Env, policy: PolicyFn, n_episodes: int, seed: int) -> list[RenderedEpisode]:
    """Run ``n_episodes`` on an ``env`` made with ``render_mode="rgb_array"``, the first reset seeded with
    ``seed`` and later ones continuing its generator: the episodes a one-env ``collect_episodes(..., seed)``
    would run. Each episode lasts until the env terminates or truncates it."""
    episodes = []
    obs, _ = env.reset(seed=seed)
    for i in range(n_episodes):
        if i:
            obs, _ = env.reset()
        frames, ret, done, info = [env.render()], 0.0, False, {}
        while not done:
            action = policy(obs["observation"][None], obs["desired_goal"][None])[0]
            obs, reward, terminated, truncated, info = env.step(action)
            frames.append(env.render())
            ret, done = ret + float(reward), terminated or truncated
        episodes.append(RenderedEpisode(np.stack(frames), float(info.get("is_success", 0.0)), ret))
    return episodes


def resize_clip(clip: np.ndarray, size: int) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 frames resized to ``[T, size, size, 3]`` (Lanczos, through Pillow)."""
    from PIL import Image  # imported here: only video needs it

    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.LANCZOS)) for f in clip])


def write_video(path: str | Path, clips: Sequence[np.ndarray], fps: int = 25) -> int:
    """Write ``[T_i, H, W, 3]`` uint8 clips one after another to an H.264 mp4; returns the frame count.

    Needs ``imageio`` with its ffmpeg plugin (``imageio-ffmpeg``, a dependency of this project).
    """
    import imageio.v2 as imageio  # imported here: only video needs it

    n_frames = 0
    # macro_block_size=2: keep the frame size (the yuv420p pixel format only needs even sizes).
    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=2) as writer:
        for clip in clips:
            for frame in clip:
                writer.append_data(frame)
                n_frames += 1
    return n_frames


def animated_gif(clips: Sequence[np.ndarray], fps: int = 25) -> bytes:
    """``[T_i, H, W, 3]`` uint8 clips one after another as a looping animated GIF (Pillow, through imageio)."""
    import imageio.v3 as iio  # imported here: only video needs it

    # GIF frame delays are whole hundredths of a second: 25 fps is exact, others round.
    return iio.imwrite("<bytes>", np.concatenate(list(clips)), extension=".gif", duration=1000 / fps, loop=0)


def write_tensorboard_video(log_dir: str | Path, tag: str, clips: Sequence[np.ndarray], fps: int, step: int) -> None:
    """Add ``[T_i, H, W, 3]`` uint8 clips to the TensorBoard event files in ``log_dir`` as one animated image at
    ``step``; TensorBoard's Images tab plays it (what ``SummaryWriter.add_video`` writes, without moviepy)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter  # imported here: slow

    height, width = clips[0].shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=animated_gif(clips, fps))
    with SummaryWriter(str(log_dir)) as writer:
        writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
