//! plugboard
