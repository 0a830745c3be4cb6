-- The sample warehouse of the embedded default configuration: a small online shop.
-- Created as a SQLite file in the data dir on first run (data.sql.sample, `sample: true`)
-- and opened read-only. Comments on tables and columns are `--` comments inside each
-- CREATE TABLE, which SQLite keeps and the SQL connector reads as the schema's documentation.

CREATE TABLE customers (
  -- People and companies who have an account with the shop.
  id INTEGER PRIMARY KEY,              -- customer number
  name TEXT NOT NULL,                  -- full name or company name
  email TEXT NOT NULL UNIQUE,          -- login and contact address
  country TEXT NOT NULL,               -- ISO 3166-1 alpha-2 country code of the billing address
  segment TEXT NOT NULL,               -- consumer, small_business or enterprise
  created_at TEXT NOT NULL             -- when the account was opened (UTC, ISO 8601)
);

CREATE TABLE products (
  -- What the shop sells.
  id INTEGER PRIMARY KEY,              -- product number
  sku TEXT NOT NULL UNIQUE,            -- stock keeping unit printed on the label
  name TEXT NOT NULL,                  -- name shown in the catalogue
  category TEXT NOT NULL,              -- catalogue section: coffee, tea, equipment or accessories
  unit_price REAL NOT NULL             -- list price in EUR, VAT included
);

CREATE TABLE orders (
  -- One row per order a customer placed; its lines are in order_items.
  id INTEGER PRIMARY KEY,              -- order number
  customer_id INTEGER NOT NULL REFERENCES customers(id), -- who ordered
  ordered_at TEXT NOT NULL,            -- when the order was placed (UTC, ISO 8601)
  status TEXT NOT NULL,                -- placed, shipped, delivered, cancelled or returned
  total REAL NOT NULL                  -- sum of the order's lines in EUR, VAT included
);

CREATE TABLE order_items (
  -- The lines of each order: which product, how many, at what price.
  order_id INTEGER NOT NULL REFERENCES orders(id),     -- the order this line belongs to
  product_id INTEGER NOT NULL REFERENCES products(id), -- the product ordered
  quantity INTEGER NOT NULL,           -- units ordered
  unit_price REAL NOT NULL,            -- price per unit charged on this order, in EUR
  PRIMARY KEY (order_id, product_id)
);

CREATE INDEX orders_by_customer ON orders (customer_id);
CREATE INDEX orders_by_time ON orders (ordered_at);

INSERT INTO customers (id, name, email, country, segment, created_at) VALUES
  (1, 'Ana Souza', 'ana.souza@example.com', 'BR', 'consumer', '2025-01-04T09:12:00Z'),
  (2, 'Bergmann Bürobedarf GmbH', 'einkauf@bergmann.example', 'DE', 'small_business', '2025-01-11T14:03:00Z'),
  (3, 'Chen Wei', 'chen.wei@example.com', 'CN', 'consumer', '2025-01-19T02:45:00Z'),
  (4, 'Dubois & Fils', 'commandes@dubois.example', 'FR', 'small_business', '2025-02-02T10:30:00Z'),
  (5, 'Emma Johansson', 'emma.j@example.com', 'SE', 'consumer', '2025-02-14T18:20:00Z'),
  (6, 'Fjord Logistics AS', 'purchasing@fjord.example', 'NO', 'enterprise', '2025-02-21T08:00:00Z'),
  (7, 'Giulia Romano', 'giulia.romano@example.com', 'IT', 'consumer', '2025-03-03T16:41:00Z'),
  (8, 'Hartley Coffee Roasters Ltd', 'orders@hartley.example', 'GB', 'small_business', '2025-03-09T11:15:00Z'),
  (9, 'Isabel Fernández', 'isabel.f@example.com', 'ES', 'consumer', '2025-03-27T20:05:00Z'),
  (10, 'Jansen Kantoorservice BV', 'inkoop@jansen.example', 'NL', 'small_business', '2025-04-06T07:55:00Z'),
  (11, 'Kenji Watanabe', 'kenji.w@example.com', 'JP', 'consumer', '2025-04-18T23:10:00Z'),
  (12, 'Lumen Analytics Inc', 'ap@lumen.example', 'US', 'enterprise', '2025-05-01T15:00:00Z'),
  (13, 'Maja Kowalska', 'maja.k@example.com', 'PL', 'consumer', '2025-05-12T12:34:00Z'),
  (14, 'Nordlicht Hotels AG', 'beschaffung@nordlicht.example', 'AT', 'enterprise', '2025-05-30T09:45:00Z'),
  (15, 'Oliver Smith', 'oliver.smith@example.com', 'GB', 'consumer', '2025-06-08T17:22:00Z'),
  (16, 'Pereira Cafés Lda', 'compras@pereira.example', 'PT', 'small_business', '2025-06-19T10:10:00Z'),
  (17, 'Quinn Morgan', 'quinn.m@example.com', 'IE', 'consumer', '2025-07-04T19:48:00Z'),
  (18, 'Rahman Trading LLC', 'orders@rahman.example', 'AE', 'small_business', '2025-07-15T06:30:00Z'),
  (19, 'Sofia Nieminen', 'sofia.n@example.com', 'FI', 'consumer', '2025-08-01T13:13:00Z'),
  (20, 'Tanaka Office Co', 'somu@tanaka.example', 'JP', 'enterprise', '2025-08-22T01:00:00Z'),
  (21, 'Uma Patel', 'uma.patel@example.com', 'IN', 'consumer', '2025-09-09T08:08:00Z'),
  (22, 'Vasquez Coworking SL', 'admin@vasquez.example', 'ES', 'small_business', '2025-09-30T12:00:00Z'),
  (23, 'William Brown', 'will.brown@example.com', 'US', 'consumer', '2025-10-14T22:37:00Z'),
  (24, 'Zeller Maschinenbau KG', 'einkauf@zeller.example', 'DE', 'enterprise', '2025-11-02T07:20:00Z');

INSERT INTO products (id, sku, name, category, unit_price) VALUES
  (1, 'COF-ETH-250', 'Ethiopia Yirgacheffe, 250 g', 'coffee', 12.90),
  (2, 'COF-COL-1K', 'Colombia Huila, 1 kg', 'coffee', 39.50),
  (3, 'COF-BRA-1K', 'Brazil Cerrado espresso blend, 1 kg', 'coffee', 29.00),
  (4, 'COF-DEC-250', 'Swiss water decaf, 250 g', 'coffee', 13.50),
  (5, 'TEA-SEN-100', 'Sencha, 100 g', 'tea', 9.80),
  (6, 'TEA-ASS-250', 'Assam breakfast, 250 g', 'tea', 11.20),
  (7, 'TEA-CHA-100', 'Chamomile, 100 g', 'tea', 6.40),
  (8, 'EQP-GRN-01', 'Burr grinder', 'equipment', 149.00),
  (9, 'EQP-ESP-02', 'Espresso machine, dual boiler', 'equipment', 1290.00),
  (10, 'EQP-KET-01', 'Gooseneck kettle', 'equipment', 69.00),
  (11, 'EQP-V60-02', 'Pour-over dripper', 'equipment', 24.00),
  (12, 'ACC-FLT-100', 'Paper filters, 100 pack', 'accessories', 5.50),
  (13, 'ACC-MUG-02', 'Stoneware mug, set of two', 'accessories', 22.00),
  (14, 'ACC-SCL-01', 'Brewing scale with timer', 'accessories', 45.00),
  (15, 'ACC-CLN-01', 'Descaling tablets, 10 pack', 'accessories', 14.90);

-- 240 orders over 2026, placed by the customers in a fixed, uneven pattern (business accounts
-- order more often), each with one to three lines.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 240)
INSERT INTO orders (id, customer_id, ordered_at, status, total)
SELECT
  i,
  CASE WHEN i % 3 = 0 THEN ((i * 7) % 6) * 4 + 2 ELSE ((i * i * 31 + i * 17) % 97) % 24 + 1 END,
  strftime('%Y-%m-%dT%H:%M:%SZ', '2026-01-01', '+' || ((i * 37) % 335) || ' days', '+' || ((i * 53) % 86400) || ' seconds'),
  CASE
    WHEN i % 29 = 0 THEN 'returned'
    WHEN i % 17 = 0 THEN 'cancelled'
    WHEN (i * 37) % 335 > 320 THEN 'placed'
    WHEN (i * 37) % 335 > 300 THEN 'shipped'
    ELSE 'delivered'
  END,
  0
FROM n;

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, p.id, 1 + (o.id * 3 + p.id * 7) % 4, p.unit_price
FROM orders o JOIN products p
  ON p.id IN ((o.id * 5) % 15 + 1, (o.id * 7 + 3) % 15 + 1, (o.id * 13 + 8) % 15 + 1)
WHERE p.id <> 9 OR o.id % 40 = 0;

UPDATE orders SET total = ROUND((SELECT SUM(quantity * unit_price) FROM order_items WHERE order_id = orders.id), 2);
