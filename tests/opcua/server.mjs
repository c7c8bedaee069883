// The OPC UA server fabrik's tests and bench/opcua talk to (node-opcua, pinned in
// package-lock.json). SecurityPolicy None; anonymous logins and the user
// operator/secret (whose password clients must encrypt, as node-opcua asks for on a
// None endpoint).
//
//   node tests/opcua/server.mjs --port 4840 [--vars N] [--period MS] [--boards CMD]
//
// Address space, namespace 1, under Objects/Plant (browse names = node id strings):
//   Temperature Double, Counter Int32, Running Boolean, Label String, Pressure Float,
//   Total UInt64, Stamp DateTime, Blob ByteString, Vector Double[3], Quality Double
//   (status alternates Good / UncertainLastUsableValue / Bad), changing every --period ms
//   (default 100) with one source timestamp per tick; Counter counts ticks from 1.
//   Objects/Plant/Static/Serial String "SN-1" (never changes).
// --vars N adds Objects/Bench/V0..V{N-1} (Double, every one changes each tick).
// --boards runs CMD (a shell command) and writes each JSON line {"name": value, ...} it
// prints to Objects/Board/<name>, all under one source timestamp: one board per line
// (bench/assets/pcb_publisher.py --jsonl). The server listens once the first line came.
// Prints "ready opc.tcp://127.0.0.1:PORT/fabrik" once it listens. XDG_CONFIG_HOME decides
// where node-opcua writes its certificates: tests point it at a scratch directory.

import { OPCUAServer } from "node-opcua-server";
import { DataType, Variant, VariantArrayType } from "node-opcua-variant";
import { StatusCodes } from "node-opcua-status-code";
import readline from "node:readline";
import { spawn } from "node:child_process";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const port = Number(arg("--port", "4840"));
const period = Number(arg("--period", "100"));
const benchVars = Number(arg("--vars", "0"));
const boards = arg("--boards", null);

const server = new OPCUAServer({
  port,
  host: "127.0.0.1", // listen on loopback only
  hostname: "127.0.0.1",
  resourcePath: "/fabrik",
  securityPolicies: [
    "http://opcfoundation.org/UA/SecurityPolicy#None",
    // Only for the user token: node-opcua asks for the password encrypted with it.
    "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
  ],
  securityModes: [1], // MessageSecurityMode.None
  allowAnonymous: true,
  userManager: { isValidUser: (user, password) => user === "operator" && password === "secret" },
  buildInfo: { productName: "fabrik-test-peer" },
  // With the variables' minimumSamplingInterval 0, items that ask for 0 get every change
  // (node-opcua otherwise coalesces changes within 50 ms).
  serverCapabilities: { minSupportedSampleRate: 0 },
});
await server.initialize();

const space = server.engine.addressSpace;
const ns = space.getOwnNamespace();
const folder = (parent, name) => ns.addFolder(parent, { browseName: name, nodeId: `s=${name}` });
const variable = (parent, name, dataType, valueRank = -1) =>
  // minimumSamplingInterval 0: monitored items see every write (exception-based), as a PLC
  // that reports each cycle would; otherwise node-opcua samples on a timer.
  ns.addVariable({ componentOf: parent, browseName: name, nodeId: `s=${name}`, dataType, valueRank,
                   minimumSamplingInterval: 0 });

const plant = folder(space.rootFolder.objects, "Plant");
const vars = {
  Temperature: [variable(plant, "Temperature", "Double"), DataType.Double],
  Counter: [variable(plant, "Counter", "Int32"), DataType.Int32],
  Running: [variable(plant, "Running", "Boolean"), DataType.Boolean],
  Label: [variable(plant, "Label", "String"), DataType.String],
  Pressure: [variable(plant, "Pressure", "Float"), DataType.Float],
  Total: [variable(plant, "Total", "UInt64"), DataType.UInt64],
  Stamp: [variable(plant, "Stamp", "DateTime"), DataType.DateTime],
  Blob: [variable(plant, "Blob", "ByteString"), DataType.ByteString],
  Vector: [variable(plant, "Vector", "Double", 1), DataType.Double],
  Quality: [variable(plant, "Quality", "Double"), DataType.Double],
};
const statics = folder(plant, "Static");
variable(statics, "Serial", "String").setValueFromSource(
  new Variant({ dataType: DataType.String, value: "SN-1" }));

const bench = [];
if (benchVars > 0) {
  const f = folder(space.rootFolder.objects, "Bench");
  for (let i = 0; i < benchVars; ++i) bench.push(variable(f, `V${i}`, "Double"));
}

// Source timestamps have ms resolution here: each write gets a later one than the last,
// so two writes never share a timestamp (as on a PLC, whose clock is finer).
let lastWrite = 0;
const nextTime = () => new Date((lastWrite = Math.max(Date.now(), lastWrite + 1)));

let tick = 0;
const set = (v, dataType, value, when, status = StatusCodes.Good, array = false) =>
  v.setValueFromSource(
    new Variant({ dataType, value, arrayType: array ? VariantArrayType.Array : VariantArrayType.Scalar }),
    status, when);

function step() {
  ++tick;
  const when = nextTime();
  const t = tick;
  set(...vars.Temperature, 20 + (t % 50) / 10, when);
  set(...vars.Counter, t, when);
  set(...vars.Running, t % 2 === 0, when);
  set(...vars.Label, `tick-${t}`, when);
  set(...vars.Pressure, 1 + t / 4, when);
  set(...vars.Total, [0, t * 1000], when); // UInt64 as [high, low]
  set(...vars.Stamp, new Date(Date.UTC(2026, 0, 1) + t * 1000), when);
  set(...vars.Blob, Buffer.from([t & 0xff, 1, 2, 3]), when);
  set(...vars.Vector, new Float64Array([t, t * 2, t * 3]), when, StatusCodes.Good, true);
  const q = [StatusCodes.Good, StatusCodes.UncertainLastUsableValue, StatusCodes.Bad][t % 3];
  set(...vars.Quality, t, when, q);
  for (let i = 0; i < bench.length; ++i) set(bench[i], DataType.Double, t + i / 1e4, when);
}
step();
setInterval(step, period);

// The board variables exist before the server listens: a client browsing Board finds them.
let feeder = null;
if (boards) {
  const board = folder(space.rootFolder.objects, "Board");
  const fields = new Map();
  const write = (values) => {
    const when = nextTime();
    for (const [name, value] of Object.entries(values)) {
      const type = typeof value === "string" ? DataType.String : DataType.Double;
      if (!fields.has(name))
        fields.set(name, variable(board, name, type === DataType.String ? "String" : "Double"));
      set(fields.get(name), type, value, when);
    }
  };
  feeder = spawn(boards, { shell: true, stdio: ["ignore", "pipe", "inherit"] });
  const lines = readline.createInterface({ input: feeder.stdout });
  let first = null;
  const ready = new Promise((resolve) => (first = resolve));
  lines.on("line", (line) => {
    try {
      write(JSON.parse(line));
    } catch {
      console.error(`server: not JSON: ${line.slice(0, 80)}`);
    }
    first();
  });
  await ready;
}

await server.start();
console.log(`ready opc.tcp://127.0.0.1:${port}/fabrik`);

const stop = async () => {
  if (feeder) feeder.kill();
  await server.shutdown(0);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
