// The web API of a running engine (docs/api.md): every route with and without the token,
// malformed requests, uploads, training, live events and /metrics, against a real
// mosquitto and a real Python worker.

#include "tests/integration/fixture.hpp"

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <regex>

using namespace fabrik::test;
using json = nlohmann::json;

namespace {

/// An engine with a source, a storage, the PCB workflow and a sink, serving its API on a
/// free port.
struct api_engine {
  temp_dir dir;
  broker b{dir / "broker"};
  process fabrik;
  int port = 0;
  std::string token;

  explicit api_engine(const std::string& http = "") {
    package("pcb-classifier", dir / "pcb.zip");
    write_file(dir / "flow.yaml",
               pcb_flow_text(b,
                             "    package: pcb-classifier\n"
                             "    train: {storage: store, stream: src/Line1/default, "
                             "min_records: 500}\n",
                             http));
    fabrik = process{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
                      (dir / "data").string(), "--http", "127.0.0.1:0"},
                     dir / "fabrik.log"};
    std::smatch m;
    REQUIRE(wait_until([&] {
      auto log = fabrik.log();
      static const std::regex url{R"(http: web UI on http://127\.0\.0\.1:(\d+)/)"};
      if (!std::regex_search(log, m, url))
        return false;
      port = std::stoi(m[1]);
      return log.find("src: connected") != std::string::npos;
    }));
    token = read_file(dir / "data" / "http-token");
    token.erase(token.find_last_not_of('\n') + 1);
  }
  ~api_engine() {
    fabrik.signal(SIGTERM);
    fabrik.wait();
  }

  httplib::Client client() const {
    httplib::Client c{"127.0.0.1", port};
    c.set_read_timeout(30, 0);
    return c;
  }
  httplib::Headers auth() const { return {{"Authorization", "Bearer " + token}}; }

  /// GET with the token; the status and the parsed body.
  std::pair<int, json> get(const std::string& path) const {
    auto r = client().Get(path.c_str(), auth());
    REQUIRE(r);
    INFO(path << " -> " << r->body);
    auto j = json::parse(r->body, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    return {r->status, j};
  }
  std::pair<int, json> post(const std::string& path, const std::string& body,
                            const std::string& type = "application/json") const {
    auto r = client().Post(path.c_str(), auth(), body, type.c_str());
    REQUIRE(r);
    INFO(path << " -> " << r->body);
    auto j = json::parse(r->body.empty() ? "null" : r->body, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    return {r->status, j};
  }

  void publish_boards(int count, int seed, int start_seq) {
    fabrik::test::publish_boards(b.port(), count, seed, start_seq);
  }
};

const std::vector<std::string> read_routes{"/api/flow",
                                           "/api/actors",
                                           "/api/actors/src",
                                           "/api/streams",
                                           "/api/records?stream=src/Line1/default&storage=store",
                                           "/api/workflows",
                                           "/api/runs",
                                           "/api/predictions"};

} // namespace

TEST_CASE("every API route needs the token and answers JSON, also for errors", "[e2e][http]") {
  api_engine e;
  for (auto& path : read_routes) {
    INFO(path);
    auto r = e.client().Get(path.c_str());
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(json::parse(r->body).at("error").get<std::string>().find("token") != std::string::npos);
    auto wrong = e.client().Get(path.c_str(), {{"Authorization", "Bearer nope"}});
    CHECK(wrong->status == 401);
    CHECK(e.get(path).first == 200);
  }
  auto metrics = e.client().Get("/metrics");
  CHECK(metrics->status == 401);
  auto train = e.client().Post("/api/workflows/model/train", "{}", "application/json");
  CHECK(train->status == 401);
  auto upload = e.client().Post("/api/workflows", "PK", "application/zip");
  CHECK(upload->status == 401);
  for (auto path : {"/api/reload", "/api/ingest/sources", "/api/workflows/model/deploy"})
    CHECK(e.client().Post(path, "{}", "application/json")->status == 401);
  CHECK(e.client().Delete("/api/ingest/sources/src")->status == 401);
  CHECK(e.client().Get("/api/ingest")->status == 401);

  // What each answers.
  auto [s1, flow] = e.get("/api/flow");
  CHECK(flow.at("name") == "workflow-test");
  CHECK(flow.at("actors").size() == 4);
  CHECK(flow.at("wires").size() == 3);
  auto [s2, actors] = e.get("/api/actors");
  std::set<std::string> names;
  for (auto& a : actors.at("actors"))
    names.insert(a.at("name").get<std::string>());
  CHECK(names == std::set<std::string>{"src", "store", "model", "out", "workflows"});
  CHECK(e.get("/api/actors/src").second.at("kind") == "mqtt.source");

  // Malformed and unknown: clear 4xx JSON.
  CHECK(e.get("/api/records").first == 400);
  CHECK(e.get("/api/records?stream=x&limit=abc").first == 400);
  CHECK(e.get("/api/records?stream=x&from=yesterday").first == 400);
  CHECK(e.get("/api/records?stream=x&storage=nope").first == 404);
  CHECK(e.get("/api/actors/nope").first == 404);
  CHECK(e.get("/api/runs/999").first == 404);
  CHECK(e.get("/api/no/such/route").first == 404);
  CHECK(e.post("/api/workflows/nope/train", "{}").first == 404);
  CHECK(e.post("/api/workflows/model/train", "not json").first == 400);
  auto [s3, bad_key] = e.post("/api/workflows/model/train", R"({"streem": "x"})");
  CHECK(s3 == 400);
  CHECK(bad_key.at("error").get<std::string>().find("unknown key 'streem'") != std::string::npos);
  auto [s4, not_zip] = e.post("/api/workflows", "this is no zip", "application/zip");
  CHECK(s4 == 422);
  CHECK(e.post("/api/workflows", "", "application/zip").first == 400);

  // Cross-site requests are refused, even with the token.
  auto cross = e.client().Post(
    "/api/workflows/model/train",
    {{"Authorization", "Bearer " + e.token}, {"Origin", "http://elsewhere.example"}}, "{}",
    "application/json");
  CHECK(cross->status == 403);
}

TEST_CASE("login sets a cookie that works in place of the token", "[e2e][http]") {
  api_engine e;
  auto c = e.client();
  CHECK(c.Post("/api/login", R"({"token": "wrong"})", "application/json")->status == 401);
  CHECK(c.Post("/api/login", "nonsense", "application/json")->status == 400);
  auto ok = c.Post("/api/login", json{{"token", e.token}}.dump(), "application/json");
  REQUIRE(ok->status == 204);
  auto cookie = ok->get_header_value("Set-Cookie");
  CHECK(cookie.find("HttpOnly") != std::string::npos);
  CHECK(cookie.find("SameSite=Strict") != std::string::npos);
  auto value = cookie.substr(0, cookie.find(';'));
  CHECK(c.Get("/api/actors", {{"Cookie", value}})->status == 200);
  CHECK(c.Get("/api/actors", {{"Cookie", "fabrik_token=wrong"}})->status == 401);
}

TEST_CASE("an uploaded zip is deployed and trained, and runs, predictions, events and metrics "
          "show it",
          "[e2e][http]") {
  api_engine e;
  e.publish_boards(800, 1, 1);
  REQUIRE(wait_until([&] {
    return stored_count(e.dir / "data" / "storage" / "store", "src/Line1/default") >= 800;
  }));
  auto zip = read_file(e.dir / "pcb.zip");
  auto [s1, added] = e.post("/api/workflows", zip, "application/zip");
  CHECK(s1 == 201);
  CHECK(added.at("version").at("name") == "pcb-classifier");
  CHECK(e.post("/api/workflows", zip, "application/zip").first == 200); // stored already
  REQUIRE(wait_until(
    [&] { return e.fabrik.log().find("model: serving pcb-classifier") != std::string::npos; },
    std::chrono::seconds{90}));
  auto [s2, versions] = e.get("/api/workflows");
  CHECK(versions.at("versions").size() == 1);

  // A run with its own data selection.
  // A manual run with fewer rows than min_records fails and says so; with its own
  // min_records it trains.
  auto [s5, small] = e.post("/api/workflows/model/train", R"({"last": 300})");
  REQUIRE(s5 == 202);
  json failed;
  REQUIRE(wait_until(
    [&] {
      failed = e.get("/api/runs/" + small.at("run").dump()).second.at("run");
      return failed.at("status") != "running";
    },
    std::chrono::seconds{90}));
  CHECK(failed.at("status") == "failed");
  CHECK(failed.at("error").get<std::string>().find("300 of 500 records") != std::string::npos);
  auto [s3, started] = e.post("/api/workflows/model/train", R"({"last": 300, "min_records": 100})");
  REQUIRE(s3 == 202);
  auto id = started.at("run").get<uint64_t>();
  json run;
  REQUIRE(wait_until(
    [&] {
      run = e.get("/api/runs/" + std::to_string(id)).second.at("run");
      return run.at("status") != "running";
    },
    std::chrono::seconds{90}));
  INFO(run.dump());
  CHECK(run.at("status") == "succeeded");
  CHECK(run.at("rows") == 300);
  CHECK(run.at("m").at("peak_rss").get<uint64_t>() > 0);
  CHECK(e.get("/api/runs?actor=model").second.at("runs").size() == 3);

  // Live events: status every second, values as boards and predictions come.
  std::string stream;
  auto c = e.client();
  auto t0 = std::chrono::steady_clock::now();
  std::thread publisher{[&] {
    std::this_thread::sleep_for(std::chrono::milliseconds{500});
    e.publish_boards(20, 5, 10001);
  }};
  c.Get("/api/events", e.auth(), [&](const char* data, size_t n) {
    stream.append(data, n);
    return std::chrono::steady_clock::now() - t0 < std::chrono::seconds{4};
  });
  publisher.join();
  CHECK(std::count(stream.begin(), stream.end(), '\n') > 4);
  CHECK(stream.find("event: status\ndata: {\"actors\"") != std::string::npos);
  CHECK(stream.find("event: values") != std::string::npos);
  CHECK(stream.find("\"actor\":\"model\"") != std::string::npos); // predictions among them

  auto [s4, predictions] = e.get("/api/predictions?actor=model&limit=5");
  CHECK(predictions.at("recent").size() == 5);
  uint64_t counted = 0;
  for (auto& [cls, n] : predictions.at("class_counts").at("model").items())
    counted += n.get<uint64_t>();
  CHECK(counted >= 20);

  auto metrics = c.Get("/metrics", e.auth());
  REQUIRE(metrics->status == 200);
  auto& text = metrics->body;
  for (auto family :
       {"fabrik_actor_messages_in_total{actor=\"src\"", "fabrik_storage_bytes{actor=\"store\"}",
        "fabrik_worker_rss_bytes{actor=\"model\"}",
        "fabrik_training_seconds{actor=\"model\",status=\"succeeded\"}",
        "fabrik_prediction_latency_seconds_count{actor=\"model\"}"}) {
    INFO(family);
    CHECK(text.find(family) != std::string::npos);
  }
}

TEST_CASE("public_status opens reads, never changes, and uploads over max_upload are refused",
          "[e2e][http]") {
  api_engine e{"http: {public_status: true, max_upload: 2KiB}\n"};
  auto c = e.client();
  CHECK(c.Get("/api/actors")->status == 200);
  CHECK(c.Get("/metrics")->status == 200);
  CHECK(c.Post("/api/workflows/model/train", "{}", "application/json")->status == 401);
  auto big = e.client().Post("/api/workflows", e.auth(), std::string(4096, 'x'), "application/zip");
  REQUIRE(big);
  CHECK(big->status == 413);
  CHECK(json::parse(big->body).at("error").get<std::string>().find("max_upload")
        != std::string::npos);
}

namespace {

/// The settings table of `kind` in a GET /api/ingest answer.
json ingest_table(const json& page, const std::string& kind) {
  for (auto& k : page.at("kinds"))
    if (k.at("kind") == kind)
      return k.at("settings");
  return json::array();
}

json ingest_source(const json& page, const std::string& name) {
  for (auto& s : page.at("sources"))
    if (s.at("name") == name)
      return s;
  return nullptr;
}

} // namespace

TEST_CASE("the ingest API adds an MQTT source to the local fragment, and a reload restarts "
          "only what changed",
          "[e2e][http]") {
  api_engine e;
  auto [s0, page] = e.get("/api/ingest");
  REQUIRE(s0 == 200);
  CHECK(page.at("storages") == json::array({"store"}));
  CHECK(page.at("sources").size() == 1);
  CHECK(page.at("sources")[0].at("local") == false);
  CHECK(page.at("sources")[0].at("kind") == "mqtt.source");
  // Every kind that marks itself editable, with its settings table; a reference setting
  // lists the entries of its section.
  auto table = ingest_table(page, "mqtt.source");
  CHECK(table.size() > 5);
  CHECK(ingest_table(page, "opcua.source").size() > 5);
  CHECK(ingest_table(page, "storage").empty());
  for (auto& row : table)
    if (row.at("name") == "broker")
      CHECK(row.at("entries") == json::array({"local"}));
  auto fragment = e.dir / "flow.local.yaml";

  // A new source names its kind, one the page may add.
  auto [sk, nokind] =
    e.post("/api/ingest/sources",
           R"({"name": "line2", "settings": {"broker": "local", "topics": ["x"]}})");
  CHECK(sk == 400);
  CHECK(nokind.at("error").get<std::string>().find("mqtt.source, opcua.source")
        != std::string::npos);
  CHECK(
    e.post("/api/ingest/sources", R"({"name": "line2", "kind": "storage", "settings": {}})").first
    == 400);

  // Invalid settings: 400 with the loader's diagnostics, nothing written.
  auto [s1, bad] = e.post("/api/ingest/sources",
                          R"({"name": "line2", "kind": "mqtt.source", "settings": {"broker": "nope",
                              "topics": ["x"], "format": "xml"}, "stores_in": ["store"]})");
  CHECK(s1 == 400);
  REQUIRE(bad.at("diagnostics").size() == 2);
  CHECK(bad.at("diagnostics")[0].get<std::string>().find("broker 'nope'") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(fragment));

  auto [s2, added] =
    e.post("/api/ingest/sources",
           R"({"name": "line2", "kind": "mqtt.source", "settings": {"broker": "local",
                                "topics": ["plant/line2/#"], "format": "json", "qos": 1},
                                "stores_in": ["store"]})");
  REQUIRE(s2 == 200);
  CHECK(added.at("reload").at("added") == json::array({"line2"}));
  CHECK(added.at("reload").at("restarted").empty());
  CHECK(read_file(fragment).find("line2 -> store") != std::string::npos);
  REQUIRE(wait_until([&] { return e.fabrik.log().find("line2: connected") != std::string::npos; }));
  publish_lines(e.b.port(), "plant/line2/a", {R"({"temp": 21.5})", R"({"temp": 22.5})"});
  REQUIRE(wait_until([&] {
    return stored_count(e.dir / "data" / "storage" / "store", "line2/plant/line2/a") == 2;
  }));
  // `fabrik check` reads the fragment too.
  std::string out;
  CHECK(run_command({fabrik_binary(), "check", (e.dir / "flow.yaml").string()}, &out) == 0);
  CHECK(out.find("5 actors") != std::string::npos);

  // Another kind of actor is not replaced by a source; only the fragment's sources can be
  // deleted here.
  CHECK(e.post("/api/ingest/sources",
               R"({"name": "store", "kind": "mqtt.source", "settings": {"broker": "local",
                   "topics": ["x"]}})")
          .first
        == 409);
  CHECK(e.client().Delete("/api/ingest/sources/src", e.auth())->status == 409);

  // A hand edit, applied by SIGHUP: line2 restarts, the rest keeps running.
  auto text = read_file(fragment);
  text.replace(text.find("plant/line2/#"), 13, "plant/line3/#");
  write_file(fragment, text);
  e.fabrik.signal(SIGHUP);
  REQUIRE(wait_until([&] {
    return e.fabrik.log().find("reload: added none; removed none; restarted line2; 4 unchanged")
           != std::string::npos;
  }));

  // A broken fragment: the reload says where, and the running flow stays as it was.
  write_file(fragment, "actors:\n  line2: {kind: mqtt.source, broker: local, colour: red}\n");
  auto [s3, broken] = e.post("/api/reload", "");
  CHECK(s3 == 400);
  CHECK(broken.at("diagnostics")[0].get<std::string>().find("flow.local.yaml:2")
        != std::string::npos);
  CHECK(e.get("/api/actors/line2").first == 200);

  write_file(fragment, text);
  auto r = e.client().Delete("/api/ingest/sources/line2", e.auth());
  REQUIRE(r->status == 200);
  CHECK(json::parse(r->body).at("reload").at("removed") == json::array({"line2"}));
  CHECK(e.get("/api/actors/line2").first == 404);
}

TEST_CASE("the ingest API adds an OPC UA source too, and keeps its masked password on an "
          "edit",
          "[e2e][http]") {
  api_engine e;
  write_file(e.dir / "opc-password", "s3cret\n");
  auto body = json{{"name", "plc"},
                   {"kind", "opcua.source"},
                   {"settings",
                    {{"endpoint", "opc.tcp://127.0.0.1:" + std::to_string(free_port())},
                     {"nodes", {"ns=1;s=Temperature"}},
                     {"user", "operator"},
                     {"password", "file:opc-password"}}},
                   {"stores_in", {"store"}}};
  auto [s1, added] = e.post("/api/ingest/sources", body.dump());
  REQUIRE(s1 == 200);
  CHECK(added.at("reload").at("added") == json::array({"plc"}));
  auto fragment = e.dir / "flow.local.yaml";
  CHECK(read_file(fragment).find("file:opc-password") != std::string::npos);
  // No server there: the source says so in its status, the engine runs on.
  REQUIRE(e.get("/api/actors/plc").first == 200);

  auto listed = ingest_source(e.get("/api/ingest").second, "plc");
  REQUIRE(listed.is_object());
  CHECK(listed.at("kind") == "opcua.source");
  CHECK(listed.at("settings").at("password") == "***");
  // An edit that sends back what the API lists changes nothing: durations come as written
  // ("10s"), not as numbers that would read as seconds, and the masked password stays.
  CHECK(listed.at("settings").at("timeout").is_string());
  auto same = json{{"name", "plc"}, {"settings", listed.at("settings")}, {"stores_in", {"store"}}};
  auto [s_same, unchanged] = e.post("/api/ingest/sources", same.dump());
  REQUIRE(s_same == 200);
  CHECK(unchanged.at("reload").at("restarted").empty());
  auto edit = json{{"name", "plc"}, {"settings", listed.at("settings")}, {"stores_in", {"store"}}};
  edit["settings"]["user"] = "maintenance";
  auto [s2, edited] = e.post("/api/ingest/sources", edit.dump());
  REQUIRE(s2 == 200);
  CHECK(edited.at("reload").at("restarted") == json::array({"plc"}));
  auto text = read_file(fragment);
  CHECK(text.find("file:opc-password") != std::string::npos);
  CHECK(text.find("***") == std::string::npos);
  CHECK(text.find("maintenance") != std::string::npos);

  // A source of one kind is not replaced by one of another.
  auto other = json{{"name", "plc"},
                    {"kind", "mqtt.source"},
                    {"settings", {{"broker", "local"}, {"topics", {"x"}}}}};
  CHECK(e.post("/api/ingest/sources", other.dump()).first == 409);
}

TEST_CASE("deploy pins a workflow actor to a stored version and back to the newest",
          "[e2e][http]") {
  api_engine e;
  e.publish_boards(800, 1, 1);
  REQUIRE(wait_until([&] {
    return stored_count(e.dir / "data" / "storage" / "store", "src/Line1/default") >= 800;
  }));
  package("pcb-classifier", e.dir / "v2.zip", "1.1.0");
  auto served = [&](const std::string& version) {
    auto [s, st] = e.get("/api/actors/model");
    return s == 200 && st.at("details").value("version", "").starts_with(version + " ")
           && st.at("details").value("model", "none") != "none";
  };
  REQUIRE(e.post("/api/workflows", read_file(e.dir / "pcb.zip"), "application/zip").first == 201);
  REQUIRE(wait_until([&] { return served("1.0.0"); }, std::chrono::seconds{90}));
  REQUIRE(e.post("/api/workflows", read_file(e.dir / "v2.zip"), "application/zip").first == 201);
  REQUIRE(wait_until([&] { return served("1.1.0"); }, std::chrono::seconds{90}));

  CHECK(e.post("/api/workflows/model/deploy", R"({"version": "9.9"})").first == 404);
  CHECK(e.post("/api/workflows/nope/deploy", R"({"version": "1.0.0"})").first == 404);
  CHECK(e.post("/api/workflows/model/deploy", R"({})").first == 400);

  auto [s1, pinned] = e.post("/api/workflows/model/deploy", R"({"version": "1.0.0"})");
  REQUIRE(s1 == 200);
  auto restarted = pinned.at("reload").at("restarted");
  CHECK(std::find(restarted.begin(), restarted.end(), "model") != restarted.end());
  CHECK(read_file(e.dir / "flow.local.yaml").find("version: 1.0.0") != std::string::npos);
  // Back on 1.0.0 with the model it trained before: no new run.
  REQUIRE(wait_until([&] { return served("1.0.0"); }, std::chrono::seconds{60}));
  CHECK(e.get("/api/runs?actor=model").second.at("runs").size() == 2);

  auto [s2, newest] = e.post("/api/workflows/model/deploy", R"({"version": null})");
  REQUIRE(s2 == 200);
  REQUIRE(wait_until([&] { return served("1.1.0"); }, std::chrono::seconds{60}));
  CHECK(read_file(e.dir / "flow.local.yaml").find("model") == std::string::npos);
}
