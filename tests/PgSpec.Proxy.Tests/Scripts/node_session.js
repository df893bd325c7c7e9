// Runs a fixed workload with node-postgres and prints the results as JSON.
// Usage: node node_session.js MODULE_DIR HOST PORT USER PASSWORD
const path = require("path");
const { Client } = require(path.join(process.argv[2], "node_modules", "pg"));

async function main() {
  const [host, port, user, password] = process.argv.slice(3);
  const client = new Client({ host, port: Number(port), user, password: password || undefined, database: "postgres", ssl: false });
  await client.connect();
  const out = [];
  out.push((await client.query("SELECT 1 AS i, 'text' AS t, NULL::int AS n, ARRAY[1,2] AS a")).rows);
  out.push((await client.query("SELECT $1::int + 1 AS sum, $2::text AS s", [41, "hello"])).rows);
  out.push((await client.query({ name: "named", text: "SELECT length($1::text) AS len", values: ["x".repeat(500000)] })).rows);
  out.push((await client.query({ name: "named", text: "SELECT length($1::text) AS len", values: ["yy"] })).rows);
  out.push((await client.query("SELECT g FROM generate_series(1, 1000) g")).rowCount);
  const big = (await client.query("SELECT repeat('z', 3000000) || 'end' AS big")).rows[0].big;
  out.push([big.length, big.slice(-5)]);
  try {
    await client.query("SELECT 1/0");
  } catch (e) {
    out.push(["error", e.code, e.message]);
  }
  out.push((await client.query("SELECT 'after the error' AS s")).rows);
  await client.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
