//! Python wheels, without a Python: what the registry and the worker's wheel sync need to know
//! about a `.whl` file.
//!
//! - [`filename`]: the PEP 427 file name (`<name>-<version>[-<build>]-<py>-<abi>-<platform>.whl`),
//!   parsed by the same rules as `packaging.utils.parse_wheel_filename`, PEP 503 canonical
//!   project names and PEP 440 versions (the `pep440_rs` crate, which orders versions exactly
//!   as pip does: pre-, post- and dev-releases, epochs, local versions).
//! - [`inspect`]: opens the archive (the `zip` crate) and checks that it is a wheel whose
//!   `METADATA` name and version are the file name's; reads `WHEEL`'s `Tag` lines.
//! - [`preflight`](mod@preflight): the original client's optional checks before an upload (entry points, a
//!   usage doc), as errors and warnings.
//! - [`interpreter`]: asks a Python interpreter which wheel tags it installs.

pub mod filename;
pub mod inspect;
pub mod interpreter;
mod metadata;
pub mod preflight;

pub use filename::{
    WheelName, WheelNameError, canonicalize_name, is_valid_wheel_name, parse_wheel_filename,
};
pub use inspect::{InspectError, WheelContents, inspect_wheel, inspect_wheel_from};
pub use preflight::{PreflightMode, PreflightReport, preflight, preflight_from};
