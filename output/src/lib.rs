//! tapline data model (Qpoint EventStore events, ObjectStore objects) and the stores that ship them.
