#!/usr/bin/env python3
"""Reference merge with pyuvdata, for benchmarks: read + fast_concat + write_uvh5.

Usage: pyuvdata_merge.py OUTPUT INPUT...

Inputs are put in frequency order (ascending when channels ascend) like
contimg's merge. Prints one JSON line with the phase timings and the peak RSS
of this process (getrusage, MiB).
"""
import json
import resource
import sys
import time
import warnings

import numpy as np
from pyuvdata import UVData


def main(argv):
    output, inputs = argv[0], argv[1:]
    t0 = time.perf_counter()
    objs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in inputs:
            uvd = UVData()
            uvd.read(path, file_type="uvh5")
            objs.append(uvd)
        ascending = objs[0].Nfreqs < 2 or objs[0].freq_array[1] > objs[0].freq_array[0]
        objs.sort(key=lambda u: float(np.mean(u.freq_array)), reverse=not ascending)
        t1 = time.perf_counter()
        merged = objs[0].fast_concat(objs[1:], axis="freq", inplace=False)
        del objs
        t2 = time.perf_counter()
        merged.write_uvh5(output, clobber=True)
    t3 = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "read_s": t1 - t0,
                "concat_s": t2 - t1,
                "write_s": t3 - t2,
                "total_s": t3 - t0,
                "peak_rss_mib": peak_mib,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
