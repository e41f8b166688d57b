//! Platform size limits: cutting text to a byte budget at a character boundary, keeping its
//! markdown valid, and ending with a visible marker. (work in progress)
