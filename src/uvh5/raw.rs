//! The few HDF5 C calls hdf5-metno does not wrap: object copy, direct chunk
//! I/O, untyped (byte-for-byte) hyperslab reads and writes, and dataset
//! creation from another dataset's creation properties.
//!
//! Every call runs under hdf5-metno's process-wide lock (`hdf5::sync::sync`),
//! the same one its own wrappers take, so mixing both is safe across threads.

use std::ffi::CString;
use std::os::raw::c_uint;

use hdf5::{Dataset, Group, Location};
use hdf5_sys::h5::{haddr_t, herr_t, hsize_t};
use hdf5_sys::h5d::{
    H5D_alloc_time_t, H5D_layout_t, H5Dcreate2, H5Dget_chunk_info_by_coord, H5Dget_create_plist,
    H5Dget_type, H5Dread, H5Dread_chunk, H5Dwrite, H5Dwrite_chunk,
};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5o::H5Ocopy;
use hdf5_sys::h5p::{
    H5P_DEFAULT, H5Pclose, H5Pget_chunk, H5Pget_layout, H5Pset_alloc_time, H5Pset_chunk,
};
use hdf5_sys::h5s::{
    H5S_class_t, H5S_seloper_t, H5Sclose, H5Screate, H5Screate_simple, H5Sselect_hyperslab,
};
use hdf5_sys::h5t::{
    H5T_C_S1, H5T_str_t, H5Tclose, H5Tcopy, H5Tequal, H5Tget_size, H5Tset_size, H5Tset_strpad,
};

/// An HDF5 failure with the library's own message, before it is tied to a file.
#[derive(Debug)]
pub(crate) struct RawError {
    pub context: String,
    pub source: hdf5::Error,
}

pub(crate) type RawResult<T> = Result<T, RawError>;

fn fail(context: impl Into<String>) -> RawError {
    // Called right after a failed call, still under the lock: the error stack is current.
    let source = match hdf5::h5check(-1_i32) {
        Err(e) => e,
        Ok(_) => hdf5::Error::from("unknown HDF5 error"),
    };
    RawError {
        context: context.into(),
        source,
    }
}

fn check_herr(ret: herr_t, context: &str) -> RawResult<()> {
    if ret < 0 { Err(fail(context)) } else { Ok(()) }
}

fn check_hid(id: hid_t, kind: Kind, context: &str) -> RawResult<Handle> {
    if id < 0 {
        Err(fail(context))
    } else {
        Ok(Handle(id, kind))
    }
}

fn cstring(name: &str) -> RawResult<CString> {
    CString::new(name).map_err(|_| RawError {
        context: format!("object name {name:?}"),
        source: hdf5::Error::from("name contains a NUL byte"),
    })
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Type,
    Space,
    Plist,
}

/// Owns a datatype, dataspace or property list id and closes it on drop.
#[derive(Debug)]
pub(crate) struct Handle(hid_t, Kind);

impl Handle {
    pub(crate) fn id(&self) -> hid_t {
        self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let id = self.0;
        let kind = self.1;
        hdf5::sync::sync(|| unsafe {
            // Close failures are not actionable here; the id is gone either way.
            let _ = match kind {
                Kind::Type => H5Tclose(id),
                Kind::Space => H5Sclose(id),
                Kind::Plist => H5Pclose(id),
            };
        });
    }
}

/// Copies object `name` (a group with everything below it, or a dataset) from
/// `src` into `dst` under the same name.
pub(crate) fn copy_object(src: &Location, name: &str, dst: &Location) -> RawResult<()> {
    let cname = cstring(name)?;
    hdf5::sync::sync(|| unsafe {
        check_herr(
            H5Ocopy(
                src.id(),
                cname.as_ptr(),
                dst.id(),
                cname.as_ptr(),
                H5P_DEFAULT,
                H5P_DEFAULT,
            ),
            &format!("copying {name}"),
        )
    })
}

/// The on-disk datatype of a dataset.
pub(crate) fn dataset_type(ds: &Dataset) -> RawResult<Handle> {
    hdf5::sync::sync(|| unsafe {
        check_hid(H5Dget_type(ds.id()), Kind::Type, "reading the datatype")
    })
}

/// Size in bytes of one element of the dataset's on-disk type.
pub(crate) fn element_size(ds: &Dataset) -> RawResult<usize> {
    let dtype = dataset_type(ds)?;
    let size = hdf5::sync::sync(|| unsafe { H5Tget_size(dtype.id()) });
    if size == 0 {
        return Err(RawError {
            context: "reading the datatype size".into(),
            source: hdf5::Error::from("datatype has size 0"),
        });
    }
    Ok(size)
}

/// True when both datasets store exactly the same datatype.
pub(crate) fn same_type(a: &Dataset, b: &Dataset) -> RawResult<bool> {
    let ta = dataset_type(a)?;
    let tb = dataset_type(b)?;
    let eq = hdf5::sync::sync(|| unsafe { H5Tequal(ta.id(), tb.id()) });
    if eq < 0 {
        return Err(RawError {
            context: "comparing datatypes".into(),
            source: hdf5::Error::from("H5Tequal failed"),
        });
    }
    Ok(eq > 0)
}

/// Chunk dimensions of a chunked dataset, `None` for contiguous/compact layouts.
pub(crate) fn chunk_dims(ds: &Dataset) -> RawResult<Option<Vec<u64>>> {
    hdf5::sync::sync(|| unsafe {
        let dcpl = check_hid(
            H5Dget_create_plist(ds.id()),
            Kind::Plist,
            "reading creation plist",
        )?;
        if H5Pget_layout(dcpl.id()) != H5D_layout_t::H5D_CHUNKED {
            return Ok(None);
        }
        let mut dims = [0 as hsize_t; 32];
        let rank = H5Pget_chunk(dcpl.id(), dims.len() as i32, dims.as_mut_ptr());
        if rank <= 0 {
            return Err(fail("reading chunk dimensions"));
        }
        Ok(Some(dims[..rank as usize].to_vec()))
    })
}

/// Creates dataset `name` in `group` with `src`'s datatype and creation
/// properties (filters, fill value, …), a fixed `shape`, and `chunk` as chunk
/// dimensions when given (otherwise `src`'s layout is kept as it is).
pub(crate) fn create_dataset_like(
    group: &Group,
    name: &str,
    src: &Dataset,
    shape: &[u64],
    chunk: Option<&[u64]>,
) -> RawResult<Dataset> {
    let cname = cstring(name)?;
    hdf5::sync::sync(|| unsafe {
        let dtype = check_hid(H5Dget_type(src.id()), Kind::Type, "reading the datatype")?;
        // H5Dget_create_plist returns a copy we are free to modify.
        let dcpl = check_hid(
            H5Dget_create_plist(src.id()),
            Kind::Plist,
            "reading creation plist",
        )?;
        if let Some(chunk) = chunk {
            check_herr(
                H5Pset_chunk(dcpl.id(), chunk.len() as i32, chunk.as_ptr()),
                "setting chunk dimensions",
            )?;
        }
        // Allocate chunks as they are written: "early" allocation would write
        // the whole dataset once with fill values before we copy the real data.
        if H5Pget_layout(dcpl.id()) == H5D_layout_t::H5D_CHUNKED {
            check_herr(
                H5Pset_alloc_time(dcpl.id(), H5D_alloc_time_t::H5D_ALLOC_TIME_INCR),
                "setting allocation time",
            )?;
        }
        let space = check_hid(
            H5Screate_simple(shape.len() as i32, shape.as_ptr(), std::ptr::null()),
            Kind::Space,
            "creating dataspace",
        )?;
        let id = H5Dcreate2(
            group.id(),
            cname.as_ptr(),
            dtype.id(),
            space.id(),
            H5P_DEFAULT,
            dcpl.id(),
            H5P_DEFAULT,
        );
        if id < 0 {
            return Err(fail(format!("creating dataset {name}")));
        }
        hdf5::from_id::<Dataset>(id).map_err(|source| RawError {
            context: format!("opening new dataset {name}"),
            source,
        })
    })
}

/// A chunk as stored on disk: its filter mask and (still compressed) bytes.
pub(crate) struct RawChunk {
    pub filter_mask: u32,
    pub size: usize,
}

/// Reads the stored bytes of the chunk at `offset` into `buf` (resized as
/// needed). Returns `None` for a chunk that was never written.
pub(crate) fn read_chunk(
    ds: &Dataset,
    offset: &[u64],
    buf: &mut Vec<u8>,
) -> RawResult<Option<RawChunk>> {
    hdf5::sync::sync(|| unsafe {
        let mut filter_mask: c_uint = 0;
        let mut addr: haddr_t = 0;
        let mut size: hsize_t = 0;
        check_herr(
            H5Dget_chunk_info_by_coord(
                ds.id(),
                offset.as_ptr(),
                &mut filter_mask,
                &mut addr,
                &mut size,
            ),
            "locating a chunk",
        )?;
        if addr == haddr_t::MAX || size == 0 {
            return Ok(None);
        }
        let size = usize::try_from(size).map_err(|_| RawError {
            context: "reading a chunk".into(),
            source: hdf5::Error::from("chunk larger than memory"),
        })?;
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let mut read_mask: u32 = 0;
        check_herr(
            H5Dread_chunk(
                ds.id(),
                H5P_DEFAULT,
                offset.as_ptr(),
                &mut read_mask,
                buf.as_mut_ptr().cast(),
            ),
            "reading a chunk",
        )?;
        Ok(Some(RawChunk {
            filter_mask: read_mask,
            size,
        }))
    })
}

/// Writes already-filtered chunk bytes at `offset`, bypassing the filter pipeline.
pub(crate) fn write_chunk(
    ds: &Dataset,
    offset: &[u64],
    filter_mask: u32,
    bytes: &[u8],
) -> RawResult<()> {
    hdf5::sync::sync(|| unsafe {
        check_herr(
            H5Dwrite_chunk(
                ds.id(),
                H5P_DEFAULT,
                filter_mask,
                offset.as_ptr(),
                bytes.len(),
                bytes.as_ptr().cast(),
            ),
            "writing a chunk",
        )
    })
}

/// Selects the block `start..start+count` of a dataset's file space.
fn block_selection(ds: &Dataset, start: &[u64], count: &[u64]) -> RawResult<(Handle, Handle)> {
    unsafe {
        let file_space = check_hid(
            hdf5_sys::h5d::H5Dget_space(ds.id()),
            Kind::Space,
            "reading the dataspace",
        )?;
        check_herr(
            H5Sselect_hyperslab(
                file_space.id(),
                H5S_seloper_t::H5S_SELECT_SET,
                start.as_ptr(),
                std::ptr::null(),
                count.as_ptr(),
                std::ptr::null(),
            ),
            "selecting a block of the dataspace",
        )?;
        let mem_space = check_hid(
            H5Screate_simple(count.len() as i32, count.as_ptr(), std::ptr::null()),
            Kind::Space,
            "creating memory dataspace",
        )?;
        Ok((file_space, mem_space))
    }
}

/// Reads the block `start..start+count` as raw bytes in the on-disk type
/// (no conversion). `buf` must hold exactly the block.
pub(crate) fn read_block(
    ds: &Dataset,
    start: &[u64],
    count: &[u64],
    buf: &mut [u8],
) -> RawResult<()> {
    hdf5::sync::sync(|| unsafe {
        let dtype = check_hid(H5Dget_type(ds.id()), Kind::Type, "reading the datatype")?;
        let (file_space, mem_space) = block_selection(ds, start, count)?;
        check_herr(
            H5Dread(
                ds.id(),
                dtype.id(),
                mem_space.id(),
                file_space.id(),
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            ),
            "reading data",
        )
    })
}

/// Writes raw bytes (in the dataset's own on-disk type) to the block `start..start+count`.
pub(crate) fn write_block(ds: &Dataset, start: &[u64], count: &[u64], buf: &[u8]) -> RawResult<()> {
    hdf5::sync::sync(|| unsafe {
        let dtype = check_hid(H5Dget_type(ds.id()), Kind::Type, "reading the datatype")?;
        let (file_space, mem_space) = block_selection(ds, start, count)?;
        check_herr(
            H5Dwrite(
                ds.id(),
                dtype.id(),
                mem_space.id(),
                file_space.id(),
                H5P_DEFAULT,
                buf.as_ptr().cast(),
            ),
            "writing data",
        )
    })
}

/// Writes `bytes` as a scalar fixed-length, NUL-padded string dataset: what
/// h5py stores for `numpy.bytes_`, which is how pyuvdata writes text.
pub(crate) fn write_fixed_string(group: &Group, name: &str, bytes: &[u8]) -> RawResult<()> {
    let cname = cstring(name)?;
    // HDF5 refuses zero-sized string types.
    let size = bytes.len().max(1);
    let mut padded = bytes.to_vec();
    padded.resize(size, 0);
    hdf5::sync::sync(|| unsafe {
        let dtype = check_hid(H5Tcopy(*H5T_C_S1), Kind::Type, "creating a string type")?;
        check_herr(H5Tset_size(dtype.id(), size), "sizing a string type")?;
        check_herr(
            H5Tset_strpad(dtype.id(), H5T_str_t::H5T_STR_NULLPAD),
            "padding a string type",
        )?;
        let space = check_hid(
            H5Screate(H5S_class_t::H5S_SCALAR),
            Kind::Space,
            "creating a scalar dataspace",
        )?;
        let id = H5Dcreate2(
            group.id(),
            cname.as_ptr(),
            dtype.id(),
            space.id(),
            H5P_DEFAULT,
            H5P_DEFAULT,
            H5P_DEFAULT,
        );
        if id < 0 {
            return Err(fail(format!("creating dataset {name}")));
        }
        let ds = hdf5::from_id::<Dataset>(id).map_err(|source| RawError {
            context: format!("opening new dataset {name}"),
            source,
        })?;
        check_herr(
            H5Dwrite(
                ds.id(),
                dtype.id(),
                hdf5_sys::h5s::H5S_ALL,
                hdf5_sys::h5s::H5S_ALL,
                H5P_DEFAULT,
                padded.as_ptr().cast(),
            ),
            "writing a string",
        )
    })
}

/// Reads a scalar fixed-length string dataset as its raw bytes (NUL padding removed).
pub(crate) fn read_fixed_string(ds: &Dataset) -> RawResult<Vec<u8>> {
    let size = element_size(ds)?;
    if ds.size() != 1 {
        return Err(RawError {
            context: "reading a string".into(),
            source: hdf5::Error::from("not a scalar string"),
        });
    }
    let mut bytes = vec![0_u8; size];
    let shape: Vec<u64> = ds.shape().iter().map(|d| *d as u64).collect();
    let start = vec![0_u64; shape.len()];
    if shape.is_empty() {
        hdf5::sync::sync(|| unsafe {
            let dtype = check_hid(H5Dget_type(ds.id()), Kind::Type, "reading the datatype")?;
            check_herr(
                H5Dread(
                    ds.id(),
                    dtype.id(),
                    hdf5_sys::h5s::H5S_ALL,
                    hdf5_sys::h5s::H5S_ALL,
                    H5P_DEFAULT,
                    bytes.as_mut_ptr().cast(),
                ),
                "reading a string",
            )
        })?;
    } else {
        read_block(ds, &start, &shape, &mut bytes)?;
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    Ok(bytes)
}
