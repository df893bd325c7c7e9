// postgres.js against pgspec serve (fetch_types: false: no catalog queries): parameters,
// transactions, an error's code, the simple protocol. Prints one JSON object.
// Usage: node serve_postgres_js.js MODULE_DIR HOST PORT USER PASSWORD TLS(0|1) TABLE
const path = require("path");
const postgres = require(path.join(process.argv[2], "node_modules", "postgres"));

async function main() {
  const [host, port, user, password, tls, table] = process.argv.slice(3);
  const sql = postgres({
    host,
    port: Number(port),
    user,
    pass: password || undefined,
    database: "db",
    ssl: tls === "1" ? { rejectUnauthorized: false } : false,
    fetch_types: false,
    max: 2,
    onnotice: () => {},
  });
  const out = {};
  await sql.unsafe(`CREATE TABLE ${table} (id int8, name text, data bytea, flag bool)`);
  out.params = await sql`SELECT ${41}::int8 + 1 AS sum, ${"hello"}::text AS s, ${null}::text AS n`;
  await sql`INSERT INTO ${sql(table)} VALUES (${1}, ${"one"}, ${Buffer.from([0, 1, 255])}, ${true})`;
  await sql.begin(async (tx) => {
    await tx`INSERT INTO ${tx(table)} VALUES (2, 'committed', NULL, false)`;
  });
  try {
    await sql.begin(async (tx) => {
      await tx`INSERT INTO ${tx(table)} VALUES (3, 'rolled back', NULL, NULL)`;
      throw new Error("roll back");
    });
  } catch (e) {
    out.rolledBack = e.message;
  }
  try {
    await sql`SELECT * FROM no_such_table`;
  } catch (e) {
    out.error = e.code;
  }
  out.unsafe = await sql.unsafe("SELECT $1::int8 * 2 AS twice", [21]);
  out.simple = await sql.unsafe("SELECT 'simple' AS protocol; SELECT 'two' AS statements").simple();
  const rows = await sql`SELECT id, name, data, flag FROM ${sql(table)} ORDER BY id`;
  out.rows = rows.map((r) => [r.id, r.name, r.data === null ? null : Buffer.from(r.data).toString("hex"), r.flag]);
  await sql.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
