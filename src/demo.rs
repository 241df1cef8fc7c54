//! The demo catalog: SKUs of both product types with stock, and coupons for
//! a few demo users, seeded into an empty store so the API can be tried at
//! once (README, "Try it").

use ordercore_actors::{CoreError, OrderCore};
use ordercore_domain::codes::ProductType;
use ordercore_domain::ids::{ProductId, SellerId};
use ordercore_domain::{
    Actor, CommandMeta, CouponDetails, CouponId, Money, SkuCode, SkuDetails, UserId,
};

/// Demo coupons stay valid this long after seeding.
const DEMO_COUPON_VALIDITY_MS: i64 = 365 * 24 * 3_600 * 1_000;

/// (code, name, product type, sale price, stock)
const DEMO_SKUS: [(&str, &str, ProductType, i64, i64); 4] = [
    (
        "SKU-TEA-001",
        "Oolong tea, 250 g",
        ProductType::NORMAL_PRODUCT,
        3_900,
        1_000,
    ),
    (
        "SKU-MUG-002",
        "Stoneware mug",
        ProductType::NORMAL_PRODUCT,
        5_900,
        500,
    ),
    (
        "SKU-LAMP-004",
        "Desk lamp",
        ProductType::NORMAL_PRODUCT,
        8_900,
        300,
    ),
    (
        "SKU-BOOK-003",
        "Cookbook (pre-order)",
        ProductType::ADVANCE_SALE,
        12_900,
        200,
    ),
];

/// (coupon id, owner, amount off, threshold)
const DEMO_COUPONS: [(&str, &str, i64, i64); 3] = [
    ("CPN-ALICE-10", "alice", 1_000, 5_000),
    ("CPN-BOB-20", "bob", 2_000, 10_000),
    ("CPN-CAROL-5", "carol", 500, 3_000),
];

/// Seeds the demo catalog: the demo SKUs and coupons the store lacks, so
/// that seeding a store that already has them (`--demo` on a restart)
/// keeps their stock, and coupons that orders locked or used, as they are.
/// Answers how many SKUs and coupons it wrote.
pub async fn seed(core: &OrderCore) -> Result<(usize, usize), CoreError> {
    let meta = CommandMeta::by(Actor::admin("demo"));
    let (mut skus, mut coupons) = (0, 0);
    for (code, name, product_type, price, stock) in DEMO_SKUS {
        let sku_code = SkuCode::parse(code)?;
        if core.sku(&sku_code)?.is_some() {
            continue;
        }
        let details = SkuDetails {
            sku_code,
            product_id: ProductId::parse(&format!("P-{code}"))?,
            product_name: name.to_owned(),
            product_type,
            sale_price: Money::from_minor(price),
            purchase_price: Money::from_minor(price / 2),
            product_unit: "piece".to_owned(),
            product_img: None,
            seller_id: SellerId::parse("demo-seller")?,
        };
        core.upsert_sku(&meta, details, stock).await?;
        skus += 1;
    }
    let now = core.now();
    for (id, owner, amount, threshold) in DEMO_COUPONS {
        let coupon_id = CouponId::parse(id)?;
        if core.coupon(&coupon_id)?.is_some() {
            continue;
        }
        let details = CouponDetails {
            coupon_id,
            user_id: UserId::parse(owner)?,
            amount: Money::from_minor(amount),
            threshold_amount: Money::from_minor(threshold),
            valid_from: now,
            valid_to: now.plus_millis(DEMO_COUPON_VALIDITY_MS),
        };
        core.issue_coupon(&meta, details).await?;
        coupons += 1;
    }
    Ok((skus, coupons))
}
