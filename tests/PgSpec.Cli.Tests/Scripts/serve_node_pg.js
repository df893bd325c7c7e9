// node-postgres against pgspec serve: parameters, prepared statements, transactions, an error's
// code, and COPY both ways through pg-copy-streams. Prints one JSON object.
// Usage: node serve_node_pg.js MODULE_DIR HOST PORT USER PASSWORD TLS(0|1) TABLE
const path = require("path");
const { pipeline } = require("stream/promises");
const { Readable, Writable } = require("stream");
const mod = (name) => require(path.join(process.argv[2], "node_modules", name));
const { Client } = mod("pg");
const copy = mod("pg-copy-streams");

async function main() {
  const [host, port, user, password, tls, table] = process.argv.slice(3);
  const client = new Client({
    host,
    port: Number(port),
    user,
    password: password || undefined,
    database: "db",
    ssl: tls === "1" ? { rejectUnauthorized: false } : false,
  });
  await client.connect();
  const out = { encrypted: client.connection.stream.encrypted === true };
  await client.query(`CREATE TABLE ${table} (id int8, name text, data bytea, flag bool)`);
  out.params = (await client.query("SELECT $1::int8 + 1 AS sum, $2::text AS s, $3::text AS n", [41, "hello", null])).rows;
  const insert = { name: "insert", text: `INSERT INTO ${table} VALUES ($1, $2, $3, $4)` };
  out.inserted = (await client.query({ ...insert, values: [1, "one", Buffer.from([0, 1, 255]), true] })).rowCount;
  await client.query({ ...insert, values: [2, "two", null, false] });
  await client.query("BEGIN");
  await client.query(`INSERT INTO ${table} (id, name) VALUES (3, 'rolled back')`);
  await client.query("ROLLBACK");
  await client.query("BEGIN");
  await client.query(`INSERT INTO ${table} (id, name) VALUES (4, 'committed')`);
  await client.query("COMMIT");
  try {
    await client.query("SELECT * FROM no_such_table");
  } catch (e) {
    out.error = e.code;
  }
  await client.query("BEGIN");
  try {
    await client.query("SELECT * FROM no_such_table");
  } catch (e) {
    out.errorInTransaction = e.code;
  }
  try {
    await client.query("SELECT 1");
  } catch (e) {
    out.afterErrorInTransaction = e.code;
  }
  await client.query("ROLLBACK");
  await pipeline(Readable.from(["5\tfive\t\\\\x0a0b\tt\n", "6\t\\N\t\\N\t\\N\n"]), client.query(copy.from(`COPY ${table} FROM STDIN`)));
  const chunks = [];
  await pipeline(
    client.query(copy.to(`COPY (SELECT id, name FROM ${table} ORDER BY id) TO STDOUT WITH (FORMAT csv)`)),
    new Writable({ write(chunk, _, done) { chunks.push(chunk); done(); } }),
  );
  out.copyOut = Buffer.concat(chunks).toString();
  const rows = (await client.query(`SELECT id, name, data, flag FROM ${table} ORDER BY id`)).rows;
  out.rows = rows.map((r) => [r.id, r.name, r.data === null ? null : r.data.toString("hex"), r.flag]);
  await client.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
