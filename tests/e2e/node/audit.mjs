import { auditServer } from 'graphql-http';
const url = process.argv[2];
const results = await auditServer({ url });
let out = [];
for (const r of results) {
  out.push({ id: r.id, name: r.name, status: r.status, reason: r.reason });
}
console.log(JSON.stringify(out));
