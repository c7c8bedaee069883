// The baseline of bench/opcua: a node-opcua client that subscribes to every variable under
// Objects/Bench with the same sampling and publishing intervals as fabrik's flow, counts the
// values it receives and prints the running total every second: "values N UNIX_SECONDS".
//
//   node bench/opcua/client.mjs ENDPOINT VARIABLES PUBLISHING_MS
//
// node-opcua comes from tests/opcua/node_modules (pinned there, installed by scripts/setup.sh).
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tests/opcua/package.json", import.meta.url));
const {
  OPCUAClient,
  AttributeIds,
  ClientSubscription,
  ClientMonitoredItemGroup,
  TimestampsToReturn,
} = require("node-opcua-client");

const [endpoint, count, publishing] = process.argv.slice(2);
const client = OPCUAClient.create({ endpointMustExist: false });
await client.connect(endpoint);
const session = await client.createSession();
const subscription = ClientSubscription.create(session, {
  requestedPublishingInterval: Number(publishing),
  requestedMaxKeepAliveCount: 50,
  requestedLifetimeCount: 300,
  publishingEnabled: true,
});
const items = [];
for (let i = 0; i < Number(count); ++i)
  items.push({ nodeId: `ns=1;s=V${i}`, attributeId: AttributeIds.Value });
const group = ClientMonitoredItemGroup.create(
  subscription, items, { samplingInterval: 0, queueSize: 10, discardOldest: true },
  TimestampsToReturn.Both);
let values = 0;
group.on("changed", () => ++values);
setInterval(() => console.log(`values ${values} ${Date.now() / 1000}`), 1000);
console.log("subscribed");
const stop = async () => {
  await session.close();
  await client.disconnect();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
