// The migrations are embedded by `sqlx::migrate!`; without this, adding a migration file
// would not rebuild the projector and the new migration would silently not ship.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
