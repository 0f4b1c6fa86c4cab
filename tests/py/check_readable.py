#!/usr/bin/env python3
"""Read UVH5 files with pyuvdata and run its full check; exit non-zero on failure.

Usage: check_readable.py [--strict] FILE...

With --strict any warning pyuvdata raises while reading or checking is an error
(our writer should produce files pyuvdata has nothing to complain about).
Prints one JSON line per file with the shapes pyuvdata saw.
"""
import json
import sys
import warnings

from pyuvdata import UVData


def main(argv):
    strict = "--strict" in argv
    files = [a for a in argv if a != "--strict"]
    if not files:
        print("no files given", file=sys.stderr)
        return 2
    failures = 0
    for path in files:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                uvd = UVData()
                uvd.read(path, file_type="uvh5", run_check=True)
                uvd.check(check_extra=True, run_check_acceptability=True)
            messages = [str(w.message) for w in caught]
            if strict and messages:
                raise RuntimeError("pyuvdata warned: " + " | ".join(messages))
            print(
                json.dumps(
                    {
                        "file": path,
                        "Nblts": int(uvd.Nblts),
                        "Nfreqs": int(uvd.Nfreqs),
                        "Npols": int(uvd.Npols),
                        "Ntimes": int(uvd.Ntimes),
                        "warnings": messages,
                    }
                )
            )
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failures += 1
            print(json.dumps({"file": path, "error": f"{type(e).__name__}: {e}"}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
