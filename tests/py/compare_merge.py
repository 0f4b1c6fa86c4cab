#!/usr/bin/env python3
"""Check a merged UVH5 file against pyuvdata's own fast_concat of the inputs.

Usage: compare_merge.py MERGED INPUT...

The reference is built independently of contimg: the inputs are read with
pyuvdata, put in frequency order (ascending when channels ascend inside a
subband, descending otherwise, so the result is monotonic), and combined with
``fast_concat(..., axis="freq")``. The merged file must pass ``run_check`` and
have identical data, flags, nsamples, frequencies, channel widths, spectral
window ids and times. Exits 1 on any mismatch, printing what differs.
"""
import sys
import warnings

import numpy as np
from pyuvdata import UVData


def read(path):
    uvd = UVData()
    uvd.read(path, file_type="uvh5", run_check=True)
    return uvd


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    merged_path, input_paths = argv[0], argv[1:]
    inputs = [read(p) for p in input_paths]
    ascending = inputs[0].Nfreqs < 2 or inputs[0].freq_array[1] > inputs[0].freq_array[0]
    inputs.sort(key=lambda u: float(np.mean(u.freq_array)), reverse=not ascending)
    reference = inputs[0]
    if len(inputs) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = inputs[0].fast_concat(inputs[1:], axis="freq", inplace=False)

    merged = read(merged_path)
    merged.check(check_extra=True, run_check_acceptability=True)

    problems = []
    for name in [
        "data_array",
        "flag_array",
        "nsample_array",
        "freq_array",
        "channel_width",
        "flex_spw_id_array",
        "spw_array",
        "time_array",
        "ant_1_array",
        "ant_2_array",
        "uvw_array",
        "polarization_array",
        "integration_time",
    ]:
        ours, theirs = getattr(merged, name), getattr(reference, name)
        if ours.shape != theirs.shape:
            problems.append(f"{name}: shape {ours.shape} != reference {theirs.shape}")
        elif not np.array_equal(ours, theirs):
            bad = np.argwhere(ours != theirs)
            problems.append(f"{name}: {len(bad)} values differ, first at {bad[0].tolist()}")
    for name in ["Nfreqs", "Nspws", "Nblts", "Nbls", "Ntimes", "Npols"]:
        if getattr(merged, name) != getattr(reference, name):
            problems.append(
                f"{name}: {getattr(merged, name)} != reference {getattr(reference, name)}"
            )
    step = np.diff(merged.freq_array)
    if merged.Nfreqs > 1 and not (np.all(step > 0) or np.all(step < 0)):
        problems.append("freq_array is not monotonic")
    if problems:
        for p in problems:
            print("MISMATCH", p)
        return 1
    print(f"OK: {merged.Nfreqs} channels, {merged.Nblts} baseline-times match fast_concat")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
