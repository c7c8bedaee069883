#include "engine/http.hpp"

#include "core/telemetry.hpp"
#include "core/time.hpp"
#include "engine/engine_api.hpp"
#include "flows/kind.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <fcntl.h>
#include <fstream>
#include <thread>
#include <unistd.h>

namespace fabrik {
namespace {

using json = nlohmann::json;

const settings_table http_settings{{
  {.name = "listen",
   .type = setting_type::string,
   .default_value = "127.0.0.1:8080",
   .doc = "address of the web UI and API, HOST:PORT (port 0: any free one), or off; "
          "`fabrik run --http` overrides it"},
  {.name = "token",
   .type = setting_type::string,
   .doc = "the access token; default: made at the first start and kept in "
          "DATA_DIR/http-token",
   .secret = true},
  {.name = "public_status",
   .type = setting_type::boolean,
   .default_value = "false",
   .doc = "let anyone who reaches the address read (status, streams, predictions); "
          "changes always need the token"},
  {.name = "max_upload",
   .type = setting_type::size,
   .default_value = "64MiB",
   .doc = "largest workflow zip the API takes",
   .min = 1024,
   .max = 512 << 20},
}};

const section http_section{
  .name = "http",
  .summary = "the engine's web UI and JSON API",
  .settings = &http_settings,
  .single = true,
};

FABRIK_REGISTER_SECTION(http_section);

constexpr const char* token_cookie = "fabrik_token";
constexpr int max_event_streams = 8;

void reply(httplib::Response& res, const api_reply& r) {
  res.status = r.status;
  res.set_content(r.body.dump(), "application/json");
}

void fail(httplib::Response& res, int status, const std::string& message) {
  reply(res, api_reply::error(status, message));
}

bool equal_time(const std::string& a, const std::string& b) {
  // Constant time in the length of the token: no early exit a timing could tell.
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string cookie_value(const httplib::Request& req, const std::string& name) {
  auto cookies = req.get_header_value("Cookie");
  size_t pos = 0;
  while (pos < cookies.size()) {
    auto end = cookies.find(';', pos);
    auto part = cookies.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    while (!part.empty() && part.front() == ' ')
      part.erase(0, 1);
    if (part.starts_with(name + "="))
      return part.substr(name.size() + 1);
    if (end == std::string::npos)
      break;
    pos = end + 1;
  }
  return {};
}

} // namespace

std::filesystem::path default_static_dir() {
  std::error_code ec_;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec_);
  std::vector<std::filesystem::path> candidates;
  if (!ec_) {
    candidates.push_back(exe.parent_path() / "web-static");
    candidates.push_back(exe.parent_path().parent_path() / "web-static");
    // PREFIX/bin/fabrik finds PREFIX/share/fabrik/web-static (cmake --install).
    candidates.push_back(exe.parent_path().parent_path() / "share" / "fabrik" / "web-static");
  }
  candidates.push_back("/usr/share/fabrik/web-static");
  for (auto& c : candidates)
    if (std::filesystem::is_regular_file(c / "index.html", ec_))
      return c;
  return {};
}

expected<std::string> data_dir_token(const std::filesystem::path& data_dir, bool& made) {
  made = false;
  auto path = data_dir / "http-token";
  std::ifstream in{path};
  std::string token;
  if (in && std::getline(in, token) && token.size() >= 16)
    return token;
  unsigned char raw[32];
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::read(fd, raw, sizeof raw) != static_cast<ssize_t>(sizeof raw)) {
    if (fd >= 0)
      ::close(fd);
    return make_error(ec::io_error, "cannot read /dev/urandom for a token");
  }
  ::close(fd);
  static const char* hex = "0123456789abcdef";
  token.clear();
  for (auto b : raw) {
    token += hex[b >> 4];
    token += hex[b & 15];
  }
  int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0)
    return make_error(ec::io_error, "cannot write " + path.string());
  auto line = token + "\n";
  bool ok = ::write(out, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(out);
  if (!ok)
    return make_error(ec::io_error, "cannot write " + path.string());
  made = true;
  return token;
}

struct http_server::impl {
  http_options opts;
  engine_api& api;
  std::shared_ptr<telemetry> tel;
  httplib::Server svr;
  std::thread thread;
  int port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<int> event_streams{0};

  impl(http_options o, engine_api& a, std::shared_ptr<telemetry> t)
    : opts(std::move(o)), api(a), tel(std::move(t)) {}

  /// Reads need the token unless public_status; changes always do.
  bool authorized(const httplib::Request& req, bool change) const {
    if (!change && opts.public_status)
      return true;
    auto header = req.get_header_value("Authorization");
    if (header.starts_with("Bearer ") && equal_time(header.substr(7), opts.token))
      return true;
    auto cookie = cookie_value(req, token_cookie);
    return !cookie.empty() && equal_time(cookie, opts.token);
  }

  /// The API answers its own pages only: a browser's cross-site request is refused (and
  /// the cookie is SameSite=Strict besides).
  bool same_origin(const httplib::Request& req) const {
    if (req.get_header_value("Sec-Fetch-Site") == "cross-site")
      return false;
    auto origin = req.get_header_value("Origin");
    return origin.empty() || origin == "http://" + req.get_header_value("Host");
  }

  /// Wraps an API handler with the checks every route shares.
  httplib::Server::Handler
  guarded(bool change, std::function<void(const httplib::Request&, httplib::Response&)> fn) {
    return [this, change, fn = std::move(fn)](const httplib::Request& req, httplib::Response& res) {
      if (!same_origin(req))
        return fail(res, 403, "cross-site requests are not accepted");
      if (!authorized(req, change))
        return fail(res, 401,
                    "this needs the access token (Authorization: Bearer TOKEN, or "
                    "POST /api/login); fabrik run prints where it is kept");
      try {
        fn(req, res);
      } catch (const std::exception& e) {
        fail(res, 500, std::string{"internal error: "} + e.what());
      }
    };
  }

  static std::optional<uint64_t> number_param(const httplib::Request& req, const char* name,
                                              uint64_t fallback, uint64_t max,
                                              httplib::Response& res) {
    if (!req.has_param(name))
      return fallback;
    auto text = req.get_param_value(name);
    char* end = nullptr;
    auto n = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || n == 0 || n > max) {
      fail(res, 400,
           std::string{name} + " must be a number from 1 to " + std::to_string(max) + ", not '"
             + text + "'");
      return std::nullopt;
    }
    return n;
  }

  static std::optional<int64_t> time_param(const httplib::Request& req, const char* name,
                                           int64_t fallback, httplib::Response& res) {
    if (!req.has_param(name))
      return fallback;
    auto t = parse_time_arg(req.get_param_value(name), now_ns());
    if (!t) {
      fail(res, 400, std::string{name} + ": " + t.err().message);
      return std::nullopt;
    }
    return *t;
  }

  void routes() {
    using R = const httplib::Request&;
    using W = httplib::Response&;
    svr.Post("/api/login", [this](R req, W res) {
      if (!same_origin(req))
        return fail(res, 403, "cross-site requests are not accepted");
      auto body = json::parse(req.body, nullptr, false);
      if (!body.is_object() || !body.contains("token") || !body["token"].is_string())
        return fail(res, 400, "send {\"token\": \"...\"}");
      if (!equal_time(body["token"].get<std::string>(), opts.token))
        return fail(res, 401, "wrong token");
      res.set_header("Set-Cookie", std::string{token_cookie} + "=" + opts.token
                                     + "; HttpOnly; SameSite=Strict; Path=/");
      res.status = 204;
    });
    svr.Get("/api/flow", guarded(false, [this](R, W res) { reply(res, api.flow_graph()); }));
    svr.Get("/api/actors", guarded(false, [this](R, W res) { reply(res, api.actors()); }));
    svr.Get("/api/nodes", guarded(false, [this](R, W res) { reply(res, api.nodes()); }));
    svr.Get(R"(/api/actors/([^/]+))",
            guarded(false, [this](R req, W res) { reply(res, api.actor(req.matches[1])); }));
    svr.Get("/api/streams", guarded(false, [this](R, W res) { reply(res, api.streams()); }));
    svr.Get("/api/records", guarded(false, [this](R req, W res) {
              auto limit = number_param(req, "limit", 100, 10000, res);
              auto from = time_param(req, "from", INT64_MIN, res);
              auto to = time_param(req, "to", INT64_MAX, res);
              if (!limit || !from || !to)
                return;
              reply(res, api.records(req.get_param_value("stream"), req.get_param_value("storage"),
                                     *from, *to, *limit));
            }));
    svr.Get("/api/workflows", guarded(false, [this](R, W res) { reply(res, api.workflows()); }));
    svr.Post("/api/workflows", guarded(true, [this](R req, W res) {
               std::string name = "upload";
               std::string_view zip = req.body;
               if (req.is_multipart_form_data()) {
                 if (!req.has_file("file"))
                   return fail(res, 400, "the form has no field 'file'");
                 auto& f = req.files.find("file")->second;
                 zip = f.content;
                 if (!f.filename.empty())
                   name = "upload " + f.filename;
               }
               if (zip.empty())
                 return fail(res, 400, "send the zip as the body, or as form field 'file'");
               reply(res, api.upload(zip, name));
             }));
    svr.Post(R"(/api/workflows/([^/]+)/train)", guarded(true, [this](R req, W res) {
               json selection = nullptr;
               if (!req.body.empty()) {
                 selection = json::parse(req.body, nullptr, false);
                 if (selection.is_discarded() || !selection.is_object())
                   return fail(res, 400, "the body must be a JSON object (the data selection)");
               }
               reply(res, api.train(req.matches[1], selection));
             }));
    svr.Post(R"(/api/workflows/([^/]+)/deploy)", guarded(true, [this](R req, W res) {
               auto body = json::parse(req.body, nullptr, false);
               if (!body.is_object() || !body.contains("version"))
                 return fail(res, 400, "send {\"version\": \"1.0.0\"} (or null for the newest)");
               reply(res, api.deploy(req.matches[1], body["version"]));
             }));
    svr.Get("/api/runs", guarded(false, [this](R req, W res) {
              auto limit = number_param(req, "limit", 100, 10000, res);
              if (limit)
                reply(res, api.runs(req.get_param_value("actor"), *limit));
            }));
    svr.Get(R"(/api/runs/(\d+))", guarded(false, [this](R req, W res) {
              reply(res, api.run(std::stoull(req.matches[1])));
            }));
    svr.Get("/api/predictions", guarded(false, [this](R req, W res) {
              auto limit = number_param(req, "limit", 100, 10000, res);
              if (limit)
                reply(res, api.predictions(req.get_param_value("actor"), *limit));
            }));
    svr.Get("/api/ingest", guarded(false, [this](R, W res) { reply(res, api.ingest()); }));
    svr.Post("/api/ingest/sources", guarded(true, [this](R req, W res) {
               auto body = json::parse(req.body, nullptr, false);
               if (body.is_discarded())
                 return fail(res, 400, "the body must be JSON: {name, settings, stores_in}");
               reply(res, api.put_source(body));
             }));
    svr.Delete(R"(/api/ingest/sources/([^/]+))", guarded(true, [this](R req, W res) {
                 reply(res, api.delete_source(req.matches[1]));
               }));
    svr.Post("/api/reload", guarded(true, [this](R, W res) { reply(res, api.reload()); }));
    svr.Get("/api/events", guarded(false, [this](R, W res) { events(res); }));
    svr.Get("/metrics", guarded(false, [this](R, W res) {
              res.set_content(api.metrics(), "text/plain; version=0.0.4");
            }));
    // Anything else under /api is a JSON 404, not a page.
    svr.Get(R"(/api/.*)", [](R req, W res) { fail(res, 404, "no such API route: " + req.path); });
    svr.Post(R"(/api/.*)", [](R req, W res) { fail(res, 404, "no such API route: " + req.path); });
    svr.Delete(R"(/api/.*)",
               [](R req, W res) { fail(res, 404, "no such API route: " + req.path); });
    svr.set_error_handler([](R req, W res) {
      if (!res.body.empty())
        return;
      if (res.status == 413)
        fail(res, 413, "the upload is larger than http.max_upload");
      else if (req.path.starts_with("/api/") || req.path == "/metrics")
        fail(res, res.status, "HTTP status " + std::to_string(res.status));
    });
  }

  /// Server-Sent Events: "status" (every actor) once a second, "values" as records come.
  void events(httplib::Response& res) {
    if (++event_streams > max_event_streams) {
      --event_streams;
      return fail(res, 503, "too many live event streams open; close a page");
    }
    auto cursor = std::make_shared<uint64_t>(0);
    auto next_status = std::make_shared<std::chrono::steady_clock::time_point>();
    res.set_header("Cache-Control", "no-store");
    res.set_chunked_content_provider(
      "text/event-stream",
      [this, cursor, next_status](size_t, httplib::DataSink& sink) {
        if (stopping)
          return false;
        std::string out;
        auto now = std::chrono::steady_clock::now();
        if (now >= *next_status) {
          out += "event: status\ndata: " + api.actors().body.dump() + "\n\n";
          *next_status = now + std::chrono::seconds{1};
        }
        if (tel) {
          std::vector<std::pair<std::string, record>> got;
          auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*next_status - now);
          *cursor =
            tel->feed_since(*cursor, 500, std::max(wait, std::chrono::milliseconds{1}), got);
          if (!got.empty()) {
            json values = json::array();
            for (auto& [actor, r] : got) {
              json fields = json::object();
              for (auto& f : r.fields)
                if (!std::holds_alternative<bytes>(f.v))
                  std::visit(
                    [&](auto& x) {
                      if constexpr (!std::is_same_v<std::decay_t<decltype(x)>, bytes>)
                        fields[f.name] = x;
                    },
                    f.v);
              values.push_back({{"actor", actor},
                                {"stream", r.stream},
                                {"time", r.time},
                                {"seq", r.seq},
                                {"fields", fields}});
            }
            out += "event: values\ndata: " + values.dump() + "\n\n";
          }
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds{200});
        }
        if (!out.empty() && !sink.write(out.data(), out.size()))
          return false;
        return !stopping.load();
      },
      [this](bool) { --event_streams; });
  }
};

expected<std::unique_ptr<http_server>> http_server::start(http_options opts, engine_api& api,
                                                          std::shared_ptr<telemetry> tel) {
  auto p = std::make_unique<impl>(std::move(opts), api, std::move(tel));
  auto* i = p.get();
  // Each live page holds one thread for its event stream: room for those and the API.
  i->svr.new_task_queue = [] { return new httplib::ThreadPool(max_event_streams + 8); };
  i->svr.set_payload_max_length(i->opts.max_upload);
  i->routes();
  if (!i->opts.static_dir.empty())
    i->svr.set_mount_point("/", i->opts.static_dir.string());
  else
    i->svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("fabrik: the web pages are not installed (no web-static beside the "
                      "binary); the API is at /api/\n",
                      "text/plain");
    });
  i->port = i->opts.port == 0
              ? i->svr.bind_to_any_port(i->opts.host)
              : (i->svr.bind_to_port(i->opts.host, i->opts.port) ? i->opts.port : -1);
  if (i->port <= 0)
    return make_error(ec::unavailable, "cannot listen on " + i->opts.host + ":"
                                         + std::to_string(i->opts.port)
                                         + " (in use, or not an address of this machine)");
  i->thread = std::thread{[i] { i->svr.listen_after_bind(); }};
  return std::unique_ptr<http_server>{new http_server{std::move(p)}};
}

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_server::~http_server() {
  impl_->stopping = true;
  if (impl_->tel)
    impl_->tel->wake_all();
  impl_->svr.stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

int http_server::port() const { return impl_->port; }

} // namespace fabrik
