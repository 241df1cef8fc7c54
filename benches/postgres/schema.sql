-- The PostgreSQL peer of `--bench core` (DESIGN.md, "Performance targets"):
-- the state ordercore keeps for a create + pay lifecycle, as a classic
-- order service stores it. It is the lighter side of the comparison: one
-- row per order (no sub-order rows), no snapshots, no event history and no
-- outbox, so a ratio against it is a lower bound.

DROP TABLE IF EXISTS order_lines, orders, sku;
DROP SEQUENCE IF EXISTS order_ids;

-- Every lifecycle updates two SKU rows twice. Left at PostgreSQL's defaults
-- those 1,000 rows bloat (full pages defeat HOT updates, so every update
-- adds index entries) and the peer slowed from ~1,800 to ~530 lifecycles/s
-- within 40 s; room for HOT updates and a vacuum every 10,000 dead rows keep
-- it steady at its best (~3,300/s in the same hour).
CREATE TABLE sku (
    id         integer PRIMARY KEY,
    price      bigint  NOT NULL,        -- minor units
    kind       smallint NOT NULL,       -- 1 normal, 2 advance sale
    available  bigint  NOT NULL CHECK (available >= 0),
    locked     bigint  NOT NULL CHECK (locked >= 0),
    sold       bigint  NOT NULL CHECK (sold >= 0)
) WITH (fillfactor = 10, autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 10000);

-- Time-ordered ids, as ordercore's are.
CREATE SEQUENCE order_ids;

CREATE TABLE orders (
    id          bigint   PRIMARY KEY,
    user_id     integer  NOT NULL,
    status      smallint NOT NULL,      -- 0 created, 1 paid
    pay_amount  bigint   NOT NULL,
    freight     bigint   NOT NULL,
    created_at  timestamptz NOT NULL,
    deadline    timestamptz NOT NULL,
    paid_at     timestamptz,
    trade_no    text UNIQUE             -- a trade is applied at most once
);
-- A shopper's orders, newest first (ordercore's user index row).
CREATE INDEX orders_by_user ON orders (user_id, id);

-- No foreign key to orders, as order services on MySQL usually have it (a
-- key check per line cost the peer 7% here).
CREATE TABLE order_lines (
    order_id    bigint   NOT NULL,
    line        smallint NOT NULL,
    sku_id      integer  NOT NULL,
    kind        smallint NOT NULL,      -- the split by product type
    quantity    integer  NOT NULL CHECK (quantity > 0),
    price       bigint   NOT NULL,
    PRIMARY KEY (order_id, line)
);

-- The benchmark's catalog: 1,000 SKUs, every fifth an advance sale, priced
-- 1,000-5,900, with stock that never runs out.
INSERT INTO sku
SELECT i, 1000 + (i % 50) * 100, CASE WHEN i % 5 = 0 THEN 2 ELSE 1 END,
       1000000000, 0, 0
FROM generate_series(0, 999) AS i;
