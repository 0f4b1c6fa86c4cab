#!/usr/bin/env python3
"""Turn a valid UVH5 subband into a hostile one that differs only by one HDF5
feature able to reach outside the file (test fixtures for tests/uvh5_hostile.rs).

    make_hostile.py KIND SRC DST OUTSIDE_DIR

SRC is copied to DST, then DST is changed in place; anything the hostile
reference points at is written into OUTSIDE_DIR (which plays "a directory
outside input_dir"). Prints one JSON object: {"outside": [paths...]}.

KINDs:
  external-visdata  Data/visdata keeps its bytes in OUTSIDE_DIR/visdata.bin
                    (H5Pset_external, unlimited size), which holds a recognisable value.
  external-history  Header/history keeps its bytes in OUTSIDE_DIR/secret.txt.
  external-extra    an extra dataset /Extra/blob, unused by UVH5, with external storage.
  external-link     Data/visdata is an external link to OUTSIDE_DIR/outside.h5:/visdata.
  vds               Data/visdata is a virtual dataset mapping OUTSIDE_DIR/outside.h5:/visdata.
  soft-link         Data/visdata is a soft link to a hidden hard-linked copy.
  unknown-filter    Header/time_array is chunked through filter 333 (not registered
                    anywhere), flagged optional, and its chunk claims to be filtered,
                    so a reader must look the filter up to read it.
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np

# A value no fixture generator produces: finding it in a merged file proves the
# merge read through the reference.
OUTSIDE_VALUE = np.complex64(1234.5 + 6789.25j)
SECRET = b"OUTSIDE-SECRET-CONTENT do not copy me"
# 256-511 are HDF5's ids for testing; none is registered anywhere (32000 is LZF).
UNKNOWN_FILTER_ID = 333


def write_outside_h5(path, shape):
    with h5py.File(path, "w") as f:
        f.create_dataset("visdata", data=np.full(shape, OUTSIDE_VALUE, dtype=np.complex64))


def main():
    kind, src, dst, outside_dir = sys.argv[1:5]
    os.makedirs(outside_dir, exist_ok=True)
    shutil.copyfile(src, dst)
    outside = []
    with h5py.File(dst, "r+") as f:
        data = f["Data"]
        header = f["Header"]
        vis_shape = data["visdata"].shape
        vis_dtype = data["visdata"].dtype
        if kind == "external-visdata":
            blob = os.path.join(outside_dir, "visdata.bin")
            values = np.full(vis_shape, OUTSIDE_VALUE, dtype=vis_dtype)
            with open(blob, "wb") as out:
                out.write(values.tobytes())
            del data["visdata"]
            # Unlimited size: a dataset created with this creation plist (as a
            # careless merge would, for its bigger output) still fits in the file.
            data.create_dataset(
                "visdata", shape=vis_shape, dtype=vis_dtype, external=[(blob, 0, h5py.h5f.UNLIMITED)]
            )
            outside.append(blob)
        elif kind == "external-history":
            secret = os.path.join(outside_dir, "secret.txt")
            with open(secret, "wb") as out:
                out.write(SECRET)
            del header["history"]
            # One element, not a scalar: h5py silently drops `external` for shape ().
            header.create_dataset(
                "history", shape=(1,), dtype=f"S{len(SECRET)}", external=[(secret, 0, len(SECRET))]
            )
            outside.append(secret)
        elif kind == "external-extra":
            blob = os.path.join(outside_dir, "blob.bin")
            with open(blob, "wb") as out:
                out.write(b"\0" * 64)
            f.create_group("Extra").create_dataset(
                "blob", shape=(8,), dtype="<f8", external=[(blob, 0, 64)]
            )
            outside.append(blob)
        elif kind in ("external-link", "vds"):
            target = os.path.join(outside_dir, "outside.h5")
            write_outside_h5(target, vis_shape)
            del data["visdata"]
            if kind == "external-link":
                data["visdata"] = h5py.ExternalLink(target, "/visdata")
            else:
                layout = h5py.VirtualLayout(shape=vis_shape, dtype=np.complex64)
                layout[...] = h5py.VirtualSource(target, "visdata", shape=vis_shape)
                data.create_virtual_dataset("visdata", layout)
            outside.append(target)
        elif kind == "soft-link":
            data.move("visdata", "visdata_real")
            data["visdata"] = h5py.SoftLink("/Data/visdata_real")
        elif kind == "unknown-filter":
            times = header["time_array"][...]
            del header["time_array"]
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk(times.shape)
            dcpl.set_filter(UNKNOWN_FILTER_ID, h5py.h5z.FLAG_OPTIONAL, ())
            space = h5py.h5s.create_simple(times.shape)
            dsid = h5py.h5d.create(
                header.id, b"time_array", h5py.h5t.IEEE_F64LE, space, dcpl=dcpl
            )
            # filter_mask 0: "every filter was applied", so reading needs filter 333.
            dsid.write_direct_chunk((0,), times.astype("<f8").tobytes(), filter_mask=0)
        elif kind == "non-utf8-telescope":
            # Bytes no text decoder accepts, where a string is expected.
            if "telescope_name" in header:
                del header["telescope_name"]
            header.create_dataset("telescope_name", data=np.bytes_(b"OVRO\xff\xfe\x80MMA"))
        else:
            raise SystemExit(f"unknown kind {kind}")
    print(json.dumps({"outside": outside}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
