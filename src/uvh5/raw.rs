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
        // SAFETY: a Handle is only made from a valid id of its `kind` (see
        // `check_hid`) and owns it, so the id is closed exactly once, here.
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
///
/// Refuses (before copying anything) when `name` is not a hard link or when
/// the object or anything below it carries a [`Hazard`]: H5Ocopy would carry
/// external storage, virtual mappings and links over into the output.
pub(crate) fn copy_object(src: &Location, name: &str, dst: &Location) -> RawResult<()> {
    let cname = cstring(name)?;
    refuse_hazards_below(src, name)?;
    // SAFETY: both locations are open ids and `cname` outlives the call.
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
    // SAFETY: `ds` is an open dataset; the returned type id is owned by the Handle.
    hdf5::sync::sync(|| unsafe {
        check_hid(H5Dget_type(ds.id()), Kind::Type, "reading the datatype")
    })
}

/// Size in bytes of one element of the dataset's on-disk type.
pub(crate) fn element_size(ds: &Dataset) -> RawResult<usize> {
    let dtype = dataset_type(ds)?;
    // SAFETY: `dtype` is an open datatype id owned by a live Handle.
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
    // SAFETY: both are open datatype ids owned by live Handles.
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
    // SAFETY: `ds` is open; the plist is owned by a Handle; H5Pget_chunk is
    // told the length of `dims` and writes at most that many values (32 is
    // H5S_MAX_RANK, so no chunked dataset has more).
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
    // The creation properties are copied below: never carry external storage
    // or a virtual layout (or a missing filter) into the output.
    if let Some(hazard) = dataset_hazards(src.id())?.into_iter().next() {
        return Err(RawError {
            context: format!("creating dataset {name} like its input"),
            source: hdf5::Error::from(format!("the input dataset {hazard}").as_str()),
        });
    }
    // SAFETY: `src` and `group` are open; every id made here is owned by a
    // Handle (or by the returned Dataset); H5Pset_chunk and H5Screate_simple
    // are given the length of the slice they read; `cname` outlives the call.
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
    check_chunk_offset(ds, offset)?;
    // SAFETY: `offset` has one value per dimension (checked above), which is
    // what both calls read; the out-pointers are locals; H5Dread_chunk writes
    // the chunk's stored size, which was just read under the same lock and
    // `buf` was grown to hold.
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
    check_chunk_offset(ds, offset)?;
    // SAFETY: `offset` has one value per dimension (checked above) and HDF5
    // reads `bytes.len()` bytes from `bytes`, the length it is given.
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

/// The chunk calls read one offset value per dimension of the dataset.
fn check_chunk_offset(ds: &Dataset, offset: &[u64]) -> RawResult<()> {
    let rank = ds.ndim();
    if offset.len() == rank {
        Ok(())
    } else {
        Err(RawError {
            context: "locating a chunk".into(),
            source: hdf5::Error::from(
                format!("the dataset has {rank} dimension(s), the chunk offset {offset:?}")
                    .as_str(),
            ),
        })
    }
}

/// What H5Dread/H5Dwrite need to move one block between a dataset and a buffer:
/// the dataset's own datatype (no conversion) and the file and memory dataspaces.
struct BlockTransfer {
    dtype: Handle,
    file_space: Handle,
    mem_space: Handle,
}

/// Prepares moving the block `start..start+count` of `ds` through a buffer of
/// `buf_len` bytes, after checking the two things HDF5 takes on trust:
/// `start` and `count` hold one value per dimension (H5Sselect_hyperslab reads
/// that many through each pointer), and the buffer is exactly the block in the
/// on-disk type (H5Dread writes, H5Dwrite reads, that many bytes at its address).
/// The dataspace and datatype checked are the very handles used for the transfer.
fn prepare_block(
    ds: &Dataset,
    start: &[u64],
    count: &[u64],
    buf_len: usize,
) -> RawResult<BlockTransfer> {
    let refused = |what: String| RawError {
        context: "checking a block transfer".into(),
        source: hdf5::Error::from(what.as_str()),
    };
    hdf5::sync::sync(|| {
        // SAFETY: `ds` is an open dataset; each id returned is owned by a
        // `Handle` and closed on drop; H5Sget_simple_extent_ndims and
        // H5Tget_size only read the ids they are given.
        let (dtype, file_space, rank, element_size) = unsafe {
            let dtype = check_hid(H5Dget_type(ds.id()), Kind::Type, "reading the datatype")?;
            let file_space = check_hid(
                hdf5_sys::h5d::H5Dget_space(ds.id()),
                Kind::Space,
                "reading the dataspace",
            )?;
            let rank = hdf5_sys::h5s::H5Sget_simple_extent_ndims(file_space.id());
            let element_size = H5Tget_size(dtype.id());
            (dtype, file_space, rank, element_size)
        };
        let rank = usize::try_from(rank).map_err(|_| fail("reading the dataspace rank"))?;
        if element_size == 0 {
            return Err(fail("reading the datatype size"));
        }
        if start.len() != rank || count.len() != rank {
            return Err(refused(format!(
                "the dataset has {rank} dimension(s) but the block has start {start:?} and count {count:?}"
            )));
        }
        let block_bytes = count.iter().try_fold(element_size, |bytes, &n| {
            usize::try_from(n).ok().and_then(|n| bytes.checked_mul(n))
        });
        if block_bytes != Some(buf_len) {
            return Err(refused(format!(
                "a block of {count:?} elements of {element_size} bytes needs {} bytes, the buffer has {buf_len}",
                block_bytes.map_or_else(|| "more than usize::MAX".to_string(), |b| b.to_string())
            )));
        }
        // SAFETY: `start` and `count` hold exactly `rank` values (checked
        // above), which is what H5Sselect_hyperslab and H5Screate_simple read;
        // the null stride/block mean "1". The memory space is owned by a Handle.
        let mem_space = unsafe {
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
            check_hid(
                H5Screate_simple(rank as i32, count.as_ptr(), std::ptr::null()),
                Kind::Space,
                "creating memory dataspace",
            )?
        };
        Ok(BlockTransfer {
            dtype,
            file_space,
            mem_space,
        })
    })
}

/// Reads the block `start..start+count` as raw bytes in the on-disk type
/// (no conversion). `buf` must hold exactly the block; anything else is an
/// error, before HDF5 is asked to write into it.
pub(crate) fn read_block(
    ds: &Dataset,
    start: &[u64],
    count: &[u64],
    buf: &mut [u8],
) -> RawResult<()> {
    let transfer = prepare_block(ds, start, count, buf.len())?;
    // SAFETY: `prepare_block` checked that `buf` is exactly as long as the
    // selection times the size of `transfer.dtype`, so H5Dread writes within
    // it; all ids are open for the call and `buf` is exclusively borrowed.
    hdf5::sync::sync(|| unsafe {
        check_herr(
            H5Dread(
                ds.id(),
                transfer.dtype.id(),
                transfer.mem_space.id(),
                transfer.file_space.id(),
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            ),
            "reading data",
        )
    })
}

/// Writes raw bytes (in the dataset's own on-disk type) to the block
/// `start..start+count`. `buf` must hold exactly the block.
pub(crate) fn write_block(ds: &Dataset, start: &[u64], count: &[u64], buf: &[u8]) -> RawResult<()> {
    let transfer = prepare_block(ds, start, count, buf.len())?;
    // SAFETY: `prepare_block` checked that `buf` is exactly as long as the
    // selection times the size of `transfer.dtype`, so H5Dwrite reads within
    // it; all ids are open for the call.
    hdf5::sync::sync(|| unsafe {
        check_herr(
            H5Dwrite(
                ds.id(),
                transfer.dtype.id(),
                transfer.mem_space.id(),
                transfer.file_space.id(),
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
    // SAFETY: the string type is `size` bytes and the dataspace scalar, so
    // H5Dwrite reads exactly `padded.len()` == `size` bytes; every id is owned
    // by a Handle or the Dataset; `cname` outlives the call.
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
        // SAFETY: a scalar dataspace (checked: one element) of a type of
        // `size` bytes, read into `bytes`, which is `size` bytes long.
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

/// Why an object of a file is refused: each of these can make HDF5 read or
/// write another file, or make one name stand for another object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hazard {
    /// The dataset keeps its bytes in other files (`H5Pset_external`).
    ExternalStorage { files: usize },
    /// The dataset is a virtual dataset, mapping data from other datasets or files.
    VirtualDataset,
    /// The link points into another HDF5 file.
    ExternalLink,
    /// The link names another path of the file (may alias or loop).
    SoftLink,
    /// A link of a user-defined class (its code is not ours).
    UserDefinedLink { class: i32 },
    /// The dataset needs a filter this process does not have (it would be
    /// looked up among plugins, which are disabled).
    UnavailableFilter { id: i32 },
    /// More objects than any UVH5 file has: walking on could take unbounded time.
    TooManyObjects { limit: usize },
}

impl std::fmt::Display for Hazard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hazard::ExternalStorage { files } => write!(
                f,
                "uses external storage (its bytes live in {files} other file(s))"
            ),
            Hazard::VirtualDataset => {
                write!(
                    f,
                    "is a virtual dataset (it maps data from other datasets or files)"
                )
            }
            Hazard::ExternalLink => write!(f, "is an external link (it points into another file)"),
            Hazard::SoftLink => write!(f, "is a soft link (UVH5 uses hard links only)"),
            Hazard::UserDefinedLink { class } => {
                write!(f, "is a user-defined link (class {class})")
            }
            Hazard::UnavailableFilter { id } => write!(
                f,
                "needs HDF5 filter {id}, which is not built in (filter plugins are not loaded)"
            ),
            Hazard::TooManyObjects { limit } => {
                write!(
                    f,
                    "holds more than {limit} links (no UVH5 file has that many)"
                )
            }
        }
    }
}

/// One refused object: its path inside the file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub object: String,
    pub hazard: Hazard,
}

/// A UVH5 file has a few dozen links; a walk stops (and refuses) past this.
pub(crate) const MAX_LINKS: usize = 10_000;

/// H5L_info_t's first member is the link type, a C enum (int). Read as a plain
/// int: a file may carry any user-defined class number, which the Rust enum
/// cannot represent.
type LinkTypeRaw = std::os::raw::c_int;
const LINK_HARD: LinkTypeRaw = 0;
const LINK_SOFT: LinkTypeRaw = 1;
const LINK_EXTERNAL: LinkTypeRaw = 64;

struct LinkWalk {
    links: Vec<(String, LinkTypeRaw)>,
    truncated: bool,
}

/// H5Lvisit callback: records the link's path and type; never opens the target.
///
/// # Safety
/// Only for H5Lvisit1 as called by [`walk_links`]: `name` NUL-terminated,
/// `info` valid for the call, `op_data` the exclusively borrowed `LinkWalk`.
unsafe extern "C" fn record_link(
    _group: hid_t,
    name: *const std::os::raw::c_char,
    info: *const hdf5_sys::h5l::H5L_info1_t,
    op_data: *mut std::ffi::c_void,
) -> herr_t {
    // SAFETY: HDF5 passes a NUL-terminated name and a valid info pointer for the
    // duration of the call; op_data is the `LinkWalk` that `walk_links` passed
    // and exclusively borrows for the whole H5Lvisit call. The link type is
    // read as the int it is in C (first member of H5L_info_t).
    let (walk, name, link_type) = unsafe {
        (
            &mut *op_data.cast::<LinkWalk>(),
            std::ffi::CStr::from_ptr(name),
            *info.cast::<LinkTypeRaw>(),
        )
    };
    if walk.links.len() >= MAX_LINKS {
        walk.truncated = true;
        return 1; // positive: stop the walk, not an error
    }
    walk.links
        .push((name.to_string_lossy().into_owned(), link_type));
    0
}

/// Every link below group `group_id`, recursively, with its type. H5Lvisit
/// descends only through hard links to groups (each group once), so soft,
/// external and user-defined links are listed but never followed.
fn walk_links(group_id: hid_t) -> RawResult<LinkWalk> {
    let mut walk = LinkWalk {
        links: Vec::new(),
        truncated: false,
    };
    hdf5::sync::sync(|| {
        // SAFETY: `group_id` is an open group or file id owned by the caller;
        // `record_link` matches H5L_iterate1_t and only touches `walk`, which
        // outlives the call. H5Lvisit1 exists in 1.10 (as H5Lvisit) and later.
        #[allow(deprecated)]
        let ret = unsafe {
            hdf5_sys::h5l::H5Lvisit1(
                group_id,
                hdf5_sys::h5::H5_index_t::H5_INDEX_NAME,
                hdf5_sys::h5::H5_iter_order_t::H5_ITER_NATIVE,
                Some(record_link),
                (&raw mut walk).cast(),
            )
        };
        check_herr(ret, "listing the links of the file")
    })?;
    Ok(walk)
}

/// Closes an object id opened with H5Oopen.
struct ObjectHandle(hid_t);

impl Drop for ObjectHandle {
    fn drop(&mut self) {
        hdf5::sync::sync(|| {
            // SAFETY: the id came from a successful H5Oopen and is closed once.
            let _ = unsafe { hdf5_sys::h5o::H5Oclose(self.0) };
        });
    }
}

/// Hazards of one dataset's creation properties: external storage, a virtual
/// layout, or a filter this process does not have.
fn dataset_hazards(dataset_id: hid_t) -> RawResult<Vec<Hazard>> {
    hdf5::sync::sync(|| {
        // SAFETY: `dataset_id` is an open dataset id; the plist returned is
        // owned by `dcpl` and closed on drop; all out-pointers point to locals
        // that live through each call, and H5Pget_filter2 is told the name
        // and cd_values buffers are empty.
        unsafe {
            let dcpl = check_hid(
                H5Dget_create_plist(dataset_id),
                Kind::Plist,
                "reading creation plist",
            )?;
            let mut hazards = Vec::new();
            let external = hdf5_sys::h5p::H5Pget_external_count(dcpl.id());
            if external < 0 {
                return Err(fail("counting external files"));
            }
            if external > 0 {
                hazards.push(Hazard::ExternalStorage {
                    files: external as usize,
                });
            }
            if H5Pget_layout(dcpl.id()) == H5D_layout_t::H5D_VIRTUAL {
                hazards.push(Hazard::VirtualDataset);
            }
            let nfilters = hdf5_sys::h5p::H5Pget_nfilters(dcpl.id());
            if nfilters < 0 {
                return Err(fail("counting filters"));
            }
            for index in 0..nfilters as c_uint {
                let mut flags: c_uint = 0;
                let mut cd_nelmts: usize = 0;
                let mut config: c_uint = 0;
                let id = hdf5_sys::h5p::H5Pget_filter2(
                    dcpl.id(),
                    index,
                    &mut flags,
                    &mut cd_nelmts,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    &mut config,
                );
                if id < 0 {
                    return Err(fail("reading a filter"));
                }
                // Plugins are disabled (see harden_library), so this only
                // looks at the filters registered in this process.
                if hdf5_sys::h5z::H5Zfilter_avail(id) <= 0 {
                    hazards.push(Hazard::UnavailableFilter { id });
                }
            }
            Ok(hazards)
        }
    })
}

/// Every object below `location` (a file or group) that could reach outside
/// the file or alias another object: soft, external and user-defined links
/// (seen, never followed), and datasets with external storage, a virtual
/// layout or a filter that is not available. Only hard-linked objects are
/// opened, and only to read their creation properties.
pub(crate) fn find_hazards(location: &Location) -> RawResult<Vec<Finding>> {
    find_hazards_in(location.id(), "")
}

/// [`find_hazards`] below the group `group_id`, naming objects `prefix` + path.
fn find_hazards_in(group_id: hid_t, prefix: &str) -> RawResult<Vec<Finding>> {
    let walk = walk_links(group_id)?;
    let mut findings = Vec::new();
    if walk.truncated {
        findings.push(Finding {
            object: "/".into(),
            hazard: Hazard::TooManyObjects { limit: MAX_LINKS },
        });
    }
    for (name, link_type) in walk.links {
        let hazard = match link_type {
            LINK_HARD => None,
            LINK_SOFT => Some(Hazard::SoftLink),
            LINK_EXTERNAL => Some(Hazard::ExternalLink),
            class => Some(Hazard::UserDefinedLink { class }),
        };
        if let Some(hazard) = hazard {
            findings.push(Finding {
                object: format!("{prefix}{name}"),
                hazard,
            });
            continue;
        }
        let object = open_object(group_id, &name)?;
        for hazard in object_hazards(&object)? {
            findings.push(Finding {
                object: format!("{prefix}{name}"),
                hazard,
            });
        }
    }
    Ok(findings)
}

/// Errors unless `name` is a hard link in `src` to an object with no
/// [`Hazard`] in or below it.
fn refuse_hazards_below(src: &Location, name: &str) -> RawResult<()> {
    let cname = cstring(name)?;
    let refused = |what: String| RawError {
        context: format!("copying {name}"),
        source: hdf5::Error::from(what.as_str()),
    };
    let mut info = hdf5_sys::h5l::H5L_info1_t::default();
    // SAFETY: `src` is open, `cname` is NUL-terminated, `info` is a local the
    // call fills; the link type is then read as the C int it is, never as the
    // Rust enum (a file may carry a class number the enum has no variant for).
    #[allow(deprecated)]
    let link_type = hdf5::sync::sync(|| unsafe {
        let ret = hdf5_sys::h5l::H5Lget_info1(src.id(), cname.as_ptr(), &mut info, H5P_DEFAULT);
        check_herr(ret, &format!("reading link {name}"))?;
        Ok(*(&raw const info).cast::<LinkTypeRaw>())
    })?;
    if link_type != LINK_HARD {
        return Err(refused(format!(
            "{name} is not a hard link (type {link_type})"
        )));
    }
    let object = open_object(src.id(), name)?;
    let mut hazards: Vec<String> = object_hazards(&object)?
        .into_iter()
        .map(|h| format!("{name} {h}"))
        .collect();
    // SAFETY: `object.0` is a valid open id.
    let kind = hdf5::sync::sync(|| unsafe { hdf5_sys::h5i::H5Iget_type(object.0) });
    if kind == hdf5_sys::h5i::H5I_type_t::H5I_GROUP {
        let below = find_hazards_in(object.0, &format!("{name}/"))?;
        hazards.extend(
            below
                .into_iter()
                .map(|f| format!("{} {}", f.object, f.hazard)),
        );
    }
    if hazards.is_empty() {
        Ok(())
    } else {
        Err(refused(hazards.join("; ")))
    }
}

/// Opens the object at `path` below `location_id`. Callers pass only paths
/// made of hard links (the walk only descends through hard links), so opening
/// it follows nothing that leaves the file.
fn open_object(location_id: hid_t, path: &str) -> RawResult<ObjectHandle> {
    let cpath = cstring(path)?;
    hdf5::sync::sync(|| {
        // SAFETY: `location_id` is open and `cpath` is NUL-terminated and
        // alive for the call.
        let id = unsafe { hdf5_sys::h5o::H5Oopen(location_id, cpath.as_ptr(), H5P_DEFAULT) };
        if id < 0 {
            Err(fail(format!("opening {path}")))
        } else {
            Ok(ObjectHandle(id))
        }
    })
}

/// Hazards of one opened object (empty for groups and named datatypes: their
/// links are covered by the walk).
fn object_hazards(object: &ObjectHandle) -> RawResult<Vec<Hazard>> {
    // SAFETY: `object.0` is a valid open id.
    let kind = hdf5::sync::sync(|| unsafe { hdf5_sys::h5i::H5Iget_type(object.0) });
    if kind == hdf5_sys::h5i::H5I_type_t::H5I_DATASET {
        dataset_hazards(object.0)
    } else {
        Ok(Vec::new())
    }
}

// SAFETY: these are the prototypes of H5PLpublic.h (HDF5 >= 1.10.1, which
// hdf5-sys requires); hdf5-sys declares them with pointer arguments instead.
unsafe extern "C" {
    fn H5PLset_loading_state(plugin_control_mask: c_uint) -> herr_t;
    fn H5PLget_loading_state(plugin_control_mask: *mut c_uint) -> herr_t;
}

/// Disables filter plugins and external-link traversal, then reads the
/// plugin state back to be sure. See [`super::harden_library`].
pub(crate) fn harden() -> Result<(), String> {
    hdf5::sync::sync(|| {
        // SAFETY: plain value and out-pointer arguments to a local; the calls
        // run under hdf5-metno's lock, after `sync` initialised the library.
        unsafe {
            if H5PLset_loading_state(0) < 0 {
                return Err("H5PLset_loading_state(0) failed".to_string());
            }
            let mut mask: c_uint = c_uint::MAX;
            if H5PLget_loading_state(&mut mask) < 0 || mask != 0 {
                return Err(format!("filter plugins still enabled (mask {mask:#x})"));
            }
            // Unregistering an already unregistered class fails harmlessly,
            // so only a still-registered class afterwards is an error.
            let _ = hdf5_sys::h5l::H5Lunregister(hdf5_sys::h5l::H5L_TYPE_EXTERNAL);
            if hdf5_sys::h5l::H5Lis_registered(hdf5_sys::h5l::H5L_TYPE_EXTERNAL) != 0 {
                return Err("the external link class is still registered".to_string());
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why every child contimg starts goes through `inherit_only_stdio`: libhdf5
    /// opens files without O_CLOEXEC and flocks them, so a child started while
    /// a file is open keeps the lock after the file is closed.
    #[test]
    fn a_child_started_while_a_file_is_open_does_not_keep_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.h5");
        for isolated in [false, true] {
            let file = hdf5::File::create(&path).unwrap();
            let mut sleeper = std::process::Command::new("sleep");
            sleeper.arg("30");
            if isolated {
                contimg_core::process::inherit_only_stdio(&mut sleeper);
            }
            let mut child = sleeper.spawn().unwrap();
            drop(file);
            let reopened = hdf5::File::open_rw(&path).map(drop);
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(
                reopened.is_ok(),
                isolated,
                "isolated child: {isolated}, reopen: {reopened:?}"
            );
        }
    }

    /// A 4×3 i32 dataset holding 0..12: the whole block is 48 bytes.
    fn small_dataset(dir: &std::path::Path) -> (hdf5::File, Dataset) {
        let file = hdf5::File::create(dir.join("block.h5")).unwrap();
        let values = ndarray::Array2::from_shape_vec((4, 3), (0..12_i32).collect()).unwrap();
        let ds = file
            .new_dataset_builder()
            .with_data(&values)
            .create("d")
            .unwrap();
        (file, ds)
    }

    const BLOCK_BYTES: usize = 4 * 3 * 4;
    const CANARY: u8 = 0xAA;

    #[test]
    fn read_block_refuses_a_buffer_shorter_than_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let (_file, ds) = small_dataset(dir.path());
        // The slice handed over is 8 bytes short; the 8 bytes after it, in the
        // same allocation, are a canary that shows whether C wrote past its end.
        let mut backing = [CANARY; BLOCK_BYTES];
        let result = read_block(&ds, &[0, 0], &[4, 3], &mut backing[..BLOCK_BYTES - 8]);
        assert_eq!(
            &backing[BLOCK_BYTES - 8..],
            &[CANARY; 8],
            "H5Dread wrote past the end of the buffer"
        );
        let err = result.expect_err("a 40-byte buffer for a 48-byte block must be refused");
        let text = format!("{}: {}", err.context, err.source);
        assert!(text.contains("48"), "{text}");
    }

    #[test]
    fn write_block_refuses_a_buffer_shorter_than_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let (_file, ds) = small_dataset(dir.path());
        let mut backing = [CANARY; BLOCK_BYTES];
        backing[..BLOCK_BYTES - 8].fill(0);
        let result = write_block(&ds, &[0, 0], &[4, 3], &backing[..BLOCK_BYTES - 8]);
        let stored: Vec<i32> = ds.read_raw().unwrap();
        assert!(
            !stored.contains(&i32::from_ne_bytes([CANARY; 4])),
            "H5Dwrite read past the end of the buffer: {stored:?}"
        );
        assert!(
            result.is_err(),
            "a 40-byte buffer for a 48-byte block must be refused"
        );
    }

    #[test]
    fn block_io_refuses_a_longer_buffer_and_a_wrong_rank() {
        let dir = tempfile::tempdir().unwrap();
        let (_file, ds) = small_dataset(dir.path());
        let mut long = vec![0_u8; BLOCK_BYTES + 4];
        assert!(read_block(&ds, &[0, 0], &[4, 3], &mut long).is_err());
        assert!(write_block(&ds, &[0, 0], &[4, 3], &long).is_err());
        // HDF5 reads as many start/count values as the dataset has dimensions.
        let mut one_row = vec![0_u8; 12];
        assert!(read_block(&ds, &[0], &[3], &mut one_row).is_err());
        assert!(write_block(&ds, &[0, 0, 0], &[1, 3, 1], &one_row).is_err());
    }

    #[test]
    fn chunk_io_refuses_an_offset_of_the_wrong_rank() {
        let dir = tempfile::tempdir().unwrap();
        let file = hdf5::File::create(dir.path().join("chunked.h5")).unwrap();
        let values = ndarray::Array2::from_shape_vec((4, 3), (0..12_i32).collect()).unwrap();
        let ds = file
            .new_dataset_builder()
            .with_data(&values)
            .chunk((2, 3))
            .create("d")
            .unwrap();
        let mut buf = Vec::new();
        assert!(read_chunk(&ds, &[2], &mut buf).is_err());
        assert!(write_chunk(&ds, &[2, 0, 0], 0, &[0; 24]).is_err());
        let stored = read_chunk(&ds, &[2, 0], &mut buf).unwrap().unwrap();
        assert_eq!(stored.size, 24);
    }

    #[test]
    fn block_io_round_trips_an_exact_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let (_file, ds) = small_dataset(dir.path());
        let mut row = vec![0_u8; 3 * 4];
        read_block(&ds, &[2, 0], &[1, 3], &mut row).unwrap();
        let values: Vec<i32> = row
            .chunks_exact(4)
            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values, [6, 7, 8]);
        let replacement: Vec<u8> = [60_i32, 70, 80]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        write_block(&ds, &[2, 0], &[1, 3], &replacement).unwrap();
        let stored: Vec<i32> = ds.read_raw().unwrap();
        assert_eq!(stored[6..9], [60, 70, 80]);
    }
}
