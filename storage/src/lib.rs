//! Durable storage for ordercore on sled 0.34: the journal of decided changes
//! (one record per group commit, the source of truth and the event outbox),
//! the state rows written behind it (order families, SKUs, coupons, the user
//! index) with a checkpoint in the same atomic batch, and recovery that
//! replays the journal tail through the domain's pure `apply`. A single writer
//! thread owns every write.
