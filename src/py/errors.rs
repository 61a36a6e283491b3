//! The exception tree (drawn in `tickwire.__init__`'s docstring) and the one conversion.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

create_exception!(
    tickwire._core,
    TickwireError,
    PyException,
    "Base class of every error tickwire raises."
);
create_exception!(
    tickwire._core,
    ConnectError,
    TickwireError,
    "The server could not be reached, or reconnecting gave up."
);
create_exception!(
    tickwire._core,
    AuthError,
    TickwireError,
    "The server refused the API key (never retried)."
);
create_exception!(
    tickwire._core,
    ProtocolError,
    TickwireError,
    "The server broke the protocol beyond recovery."
);
create_exception!(
    tickwire._core,
    StreamClosed,
    TickwireError,
    "The stream was closed and then used."
);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::Connect(_) => ConnectError::new_err(msg),
            Error::Auth(_) => AuthError::new_err(msg),
            Error::Protocol(_) => ProtocolError::new_err(msg),
            Error::Closed => StreamClosed::new_err(msg),
            Error::Config(_) => PyValueError::new_err(msg),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TickwireError", py.get_type::<TickwireError>())?;
    m.add("ConnectError", py.get_type::<ConnectError>())?;
    m.add("AuthError", py.get_type::<AuthError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("StreamClosed", py.get_type::<StreamClosed>())?;
    Ok(())
}
