//! Command-by-command tests of the order and after-sale state tables.

use crate::testkit::*;

#[test]
fn a_fixture_order_is_created_with_its_stock_locked() {
    let mut shop = Shop::default();
    let family = shop.create("u1", &[("A1", 2)], None);
    assert_eq!(family.version, 1);
    assert_eq!(shop.sku("A1").locked, 2);
    assert_eq!(shop.sku("A1").available, 98);
}
