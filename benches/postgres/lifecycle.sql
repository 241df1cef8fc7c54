-- One create + pay lifecycle of `--bench core`, as two transactions in raw
-- SQL (pgbench, prepared statements). SKUs are taken in ascending order so
-- two lifecycles never deadlock; pgbench's \gset fails the client if a
-- reservation finds too little stock, which the catalog rules out.
\set u random(0, 99999)
\set a random(0, 996)
\set b :a + 3
BEGIN;
UPDATE sku SET available = available - 1, locked = locked + 1
    WHERE id = :a AND available >= 1 RETURNING price AS pa, kind AS ka \gset
UPDATE sku SET available = available - 2, locked = locked + 2
    WHERE id = :b AND available >= 2 RETURNING price AS pb, kind AS kb \gset
INSERT INTO orders (id, user_id, status, pay_amount, freight, created_at, deadline)
    VALUES (nextval('order_ids'), :u, 0, :pa + 2 * :pb + 1000, 1000, now(),
            now() + interval '30 minutes')
    RETURNING id AS oid, pay_amount AS amount \gset
INSERT INTO order_lines (order_id, line, sku_id, kind, quantity, price)
    VALUES (:oid, 1, :a, :ka, 1, :pa), (:oid, 2, :b, :kb, 2, :pb);
COMMIT;
BEGIN;
UPDATE orders SET status = 1, paid_at = now(), trade_no = 'T' || :oid
    WHERE id = :oid AND status = 0 AND pay_amount = :amount;
UPDATE sku SET locked = locked - 1, sold = sold + 1 WHERE id = :a;
UPDATE sku SET locked = locked - 2, sold = sold + 2 WHERE id = :b;
COMMIT;
