//! mlx-lm
