//! mlx-grpo
