#!/usr/bin/env python3
"""Write a group of small UVH5 subband files with pyuvdata (test fixtures).

The files are built from scratch with ``UVData.new`` so the Rust reader is
tested against what the reference implementation writes, not against our own
writer. Usage:

    make_fixtures.py OUTDIR [--subbands 16] [--nfreqs 8] [--ntimes 4] [--nants 5]
                            [--descending] [--start 2025-01-02T03:04:05] [--seed 1]
                            [--data-compression gzip] [--chunks a,b,c | --contiguous]

Prints the written paths, one per line. sb00 is the highest frequency band.
"""
import argparse
import os
import sys
import warnings

import numpy as np
from astropy.coordinates import EarthLocation
from astropy.time import Time
import astropy.units as u

from pyuvdata import Telescope, UVData

# OVRO, where DSA-110 is.
DSA110_LOCATION = EarthLocation.from_geodetic(
    lon=-118.2825 * u.deg, lat=37.2339 * u.deg, height=1222.0 * u.m
)
CHANNEL_WIDTH_HZ = 244140.625
TOP_OF_BAND_HZ = 1498.75e6


def build_subband(args, subband, rng):
    nants = args.nants
    enu = np.zeros((nants, 3))
    enu[:, 0] = np.arange(nants) * 17.0
    enu[:, 1] = (np.arange(nants) % 3) * 5.0
    telescope = Telescope.new(
        name="DSA-110-test",
        location=DSA110_LOCATION,
        antenna_positions={i: enu[i] for i in range(nants)},
        antenna_names=[f"pad{i + 1}" for i in range(nants)],
        instrument="DSA-110",
        feed_array=[["x", "y"]] * nants,
        feed_angle=[[np.pi / 2, 0.0]] * nants,
        mount_type=["fixed"] * nants,
    )
    # sb00 is the highest band; within a band channels ascend unless --descending.
    band_top = TOP_OF_BAND_HZ - subband * args.nfreqs * CHANNEL_WIDTH_HZ
    band_bottom = band_top - args.nfreqs * CHANNEL_WIDTH_HZ
    freqs = band_bottom + (np.arange(args.nfreqs) + 0.5) * CHANNEL_WIDTH_HZ
    channel_width = np.full(args.nfreqs, CHANNEL_WIDTH_HZ)
    if args.descending:
        freqs = freqs[::-1].copy()
        channel_width = -channel_width
    start = Time(args.start, format="isot", scale="utc").jd
    integration_s = 12.884901888
    times = start + (np.arange(args.ntimes) + 0.5) * integration_s / 86400.0
    antpairs = [(a, b) for a in range(nants) for b in range(a, nants)]
    uvd = UVData.new(
        freq_array=freqs,
        channel_width=channel_width,
        polarization_array=["xx", "yy"],
        times=times,
        telescope=telescope,
        antpairs=antpairs,
        do_blt_outer=True,
        integration_time=integration_s,
        time_axis_faster_than_bls=False,
        history=f"pyuvdata test fixture subband {subband}",
        empty=True,
    )
    shape = uvd.data_array.shape
    uvd.data_array = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(
        np.complex64
    )
    # Auto-correlations are real and positive; pyuvdata's check insists.
    autos = uvd.ant_1_array == uvd.ant_2_array
    uvd.data_array[autos] = np.abs(uvd.data_array[autos]) + 10.0
    uvd.flag_array = rng.random(shape) < 0.1
    uvd.nsample_array = rng.integers(0, 5, size=shape).astype(np.float32)
    return uvd


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--subbands", type=int, default=16)
    parser.add_argument("--nfreqs", type=int, default=8)
    parser.add_argument("--ntimes", type=int, default=4)
    parser.add_argument("--nants", type=int, default=5)
    parser.add_argument("--descending", action="store_true")
    parser.add_argument("--start", default="2025-01-02T03:04:05")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--data-compression", default=None, help="visdata compression (default none)"
    )
    parser.add_argument(
        "--chunks", default=None, help="chunk shape 'a,b,c' for the data sets (default: h5py's)"
    )
    parser.add_argument(
        "--contiguous", action="store_true", help="no chunking and no compression at all"
    )
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    stamp = args.start[:19]
    for subband in range(args.subbands):
        uvd = build_subband(args, subband, rng)
        path = os.path.join(args.outdir, f"{stamp}_sb{subband:02d}.hdf5")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if args.contiguous:
                uvd.write_uvh5(
                    path,
                    clobber=True,
                    chunks=None,
                    data_compression=None,
                    flags_compression=None,
                    nsample_compression=None,
                )
            else:
                chunks = True
                if args.chunks:
                    chunks = tuple(int(c) for c in args.chunks.split(","))
                uvd.write_uvh5(
                    path, clobber=True, chunks=chunks, data_compression=args.data_compression
                )
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
