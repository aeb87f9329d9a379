"""Position-hashed noise on the global 10 m pixel grid: identical values wherever tiles overlap."""

from __future__ import annotations

import numpy as np

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _hash_uniform(ix: np.ndarray, iy: np.ndarray, salt: np.uint64) -> np.ndarray:
    """Uniform [0, 1) values hashed from integer positions (splitmix64 finaliser)."""
    ux = np.asarray(ix, dtype=np.int64).astype(np.uint64)  # negative positions wrap, which is fine for hashing
    uy = np.asarray(iy, dtype=np.int64).astype(np.uint64)
    h = (ux * _K1) ^ (uy * _K2)
    h = h + salt
    h ^= h >> np.uint64(30)
    h *= _M1
    h ^= h >> np.uint64(27)
    h *= _M2
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def value_noise(gx: np.ndarray, gy: np.ndarray, scale: float, salt: np.uint64) -> np.ndarray:
    """Smooth value noise in [-1, 1] on the global pixel grid, lattice ``scale`` pixels apart."""
    fx, fy = gx / scale, gy / scale
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    tx, ty = fx - ix, fy - iy
    sx, sy = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)  # smoothstep: no lattice creases
    lx = np.arange(ix.min(), ix.max() + 2)
    ly = np.arange(iy.min(), iy.max() + 2)
    lattice = _hash_uniform(lx[None, :], ly[:, None], salt) * 2 - 1
    jx, jy = ix - lx[0], iy - ly[0]
    v00, v01 = lattice[np.ix_(jy, jx)], lattice[np.ix_(jy, jx + 1)]
    v10, v11 = lattice[np.ix_(jy + 1, jx)], lattice[np.ix_(jy + 1, jx + 1)]
    top = v00 + (v01 - v00) * sx[None, :]
    bottom = v10 + (v11 - v10) * sx[None, :]
    return top + (bottom - top) * sy[:, None]


def texture(gx, gy, salts) -> np.ndarray:
    """Two-octave value noise scaled to a standard deviation of about 1."""
    t = value_noise(gx, gy, 7.0, salts[0]) + 0.6 * value_noise(gx, gy, 2.5, salts[1])
    return (t / 0.5).astype(np.float32)


def gaussian_noise(gx, gy, salt: np.uint64) -> np.ndarray:
    """Standard normal noise per pixel (Box-Muller on two hashed uniforms)."""
    u1 = _hash_uniform(gx[None, :], gy[:, None], salt)
    u2 = _hash_uniform(gx[None, :], gy[:, None], salt ^ np.uint64(0x5DEECE66D))
    return (np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)).astype(np.float32)
