//! Stand-in for tracing's logging macros: format arguments are checked by
//! `format_args!` (including inline `{NAME}` captures) and discarded.

#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {{
        let _ = ::core::format_args!($($arg)+);
    }};
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {{
        let _ = ::core::format_args!($($arg)+);
    }};
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {{
        let _ = ::core::format_args!($($arg)+);
    }};
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {{
        let _ = ::core::format_args!($($arg)+);
    }};
}
