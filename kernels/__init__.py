"""Numerical kernels of the engine (no ObsPy, no I/O, no imports from ``engine``).

Every fast kernel has a slow, readable twin that the tests compare it with.

Modules
-------
wavelets
    Morlet wavelets, superlet orders, the FFT-length ladder and the cached
    bank of wavelet spectra.
superlet_cpu
    FFT-based superlet transform on the CPU (SciPy pocketfft + Numba).
superlet_gpu
    The same maths for CUDA (CuPy cuFFT + the fused kernel below), written
    against an array module ``xp`` so that it also runs on NumPy.
cuda_geomean
    The fused geometric-mean step as CUDA C++ for CuPy's ``RawModule`` (no
    Numba CUDA); its source also compiles as plain C++ for the tests.
scalogram_cpu
    Stage 2 of the scalogram images (box sums, scaling, colours, resize) fused
    in one Numba pass per event, byte-identical to the array-module steps of
    :mod:`engine.images`.
superlet_reference
    The slow direct-convolution superlet and box sums (the readable twins).
"""
