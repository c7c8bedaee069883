#include "drivers/opcua/subscriber.hpp"

#include "core/backoff.hpp"
#include "core/time.hpp"
#include "drivers/opcua/names.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <type_traits>
#include <unordered_set>

namespace fabrik::opcua {
namespace {

using namespace std::chrono;

constexpr uint32_t objects_folder = 85;
/// Publish requests kept at the server, so one answered is never a gap in delivery.
constexpr size_t publish_window = 3;
/// Folder depth browsed below a `folders` entry.
constexpr int max_folder_depth = 10;

value scalar_value(const scalar& s) {
  return std::visit(
    [](const auto& v) -> value {
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, bool>)
        return v;
      else if constexpr (std::is_same_v<T, uint64_t>)
        return v > uint64_t(INT64_MAX) ? value{double(v)} : value{int64_t(v)};
      else if constexpr (std::is_integral_v<T>)
        return int64_t{v};
      else if constexpr (std::is_floating_point_v<T>)
        return double{v};
      else if constexpr (std::is_same_v<T, std::string>)
        return v;
      else if constexpr (std::is_same_v<T, date_time>)
        return to_unix_ns(v);
      else if constexpr (std::is_same_v<T, byte_string>)
        return bytes{v.bytes};
      else if constexpr (std::is_same_v<T, extension_object>)
        return bytes{v.body};
      else if constexpr (std::is_same_v<T, xml_element>)
        return v.xml;
      else if constexpr (std::is_same_v<T, status_code>)
        return int64_t{v.code};
      else if constexpr (std::is_same_v<T, node_id>)
        return to_string(v);
      else if constexpr (std::is_same_v<T, expanded_node_id>)
        return to_string(v.node);
      else if constexpr (std::is_same_v<T, qualified_name>)
        return std::to_string(v.namespace_index) + ":" + v.name;
      else if constexpr (std::is_same_v<T, localized_text>)
        return v.text.value_or("");
      else if constexpr (std::is_same_v<T, guid>)
        return to_string(node_id{0, v}).substr(2); // "g=..." without the prefix
      else
        return std::string{}; // monostate: never reached (callers skip null)
    },
    s);
}

std::string join(const std::vector<std::string>& parts, char sep) {
  std::string out;
  for (auto& p : parts)
    out += (out.empty() ? "" : std::string{sep}) + p;
  return out;
}

} // namespace

void append_fields(const std::string& name, const variant& v, std::vector<field>& out) {
  if (!v.is_array()) {
    if (v.value.index() != 0)
      out.push_back({name, scalar_value(v.value)});
    return;
  }
  std::visit(
    [&](const auto& values) {
      using V = std::decay_t<decltype(values)>;
      if constexpr (!std::is_same_v<V, std::monostate>)
        for (size_t i = 0; i < values.size(); ++i)
          out.push_back({name + "[" + std::to_string(i) + "]", scalar_value(scalar{values[i]})});
    },
    v.values);
}

std::vector<record> record_grouper::add(const data_change_notification& n, int64_t ingest,
                                        uint64_t& next_seq, bool more) {
  std::map<std::pair<int64_t, uint16_t>, std::vector<size_t>> by_time; // into open_
  for (size_t i = 0; i < open_.size(); ++i)
    by_time[{open_[i].r.time, open_[i].r.quality}].push_back(i);
  for (auto& item : n.monitored_items) {
    if (item.client_handle >= names_.size() || !item.value.value)
      continue;
    uint16_t q = quality_of(item.value.status.value_or(status_code{}));
    int64_t t = ingest;
    if (item.value.source_timestamp)
      t = to_unix_ns(*item.value.source_timestamp);
    else if (item.value.server_timestamp)
      t = to_unix_ns(*item.value.server_timestamp);
    if (t == INT64_MIN || t == INT64_MAX
        || (!item.value.source_timestamp && !item.value.server_timestamp)) {
      t = ingest;
      q |= quality::time_replaced;
    }
    // The first open record of that time and quality that lacks this variable, whether
    // the server lists changes item by item or time by time.
    auto& same = by_time[{t, q}];
    auto at = std::find_if(same.begin(), same.end(),
                           [&](size_t i) { return !open_[i].has.contains(item.client_handle); });
    size_t target;
    if (at != same.end()) {
      target = *at;
    } else {
      open_record o;
      o.r.stream = stream_;
      o.r.time = t;
      o.r.ingest_time = ingest;
      o.r.seq = next_seq++;
      o.r.quality = q;
      target = open_.size();
      same.push_back(target);
      open_.push_back(std::move(o));
    }
    open_[target].has.insert(item.client_handle);
    append_fields(names_[item.client_handle].name, *item.value.value, open_[target].r.fields);
  }
  if (more)
    return {};
  // Everything older than the newest time is complete.
  int64_t newest = INT64_MIN;
  for (auto& o : open_)
    newest = std::max(newest, o.r.time);
  std::vector<record> done;
  std::vector<open_record> held;
  for (auto& o : open_) {
    if (o.r.time == newest)
      held.push_back(std::move(o));
    else if (!o.r.fields.empty())
      done.push_back(std::move(o.r));
  }
  open_ = std::move(held);
  return done;
}

std::vector<record> record_grouper::flush() {
  std::vector<record> done;
  for (auto& o : open_)
    if (!o.r.fields.empty())
      done.push_back(std::move(o.r));
  open_.clear();
  return done;
}

subscriber::subscriber(monitor_options options, monitor_events events)
  : options_(std::move(options)), events_(std::move(events)) {}

subscriber::~subscriber() { stop(); }

void subscriber::start() {
  thread_ = std::thread{[this] { run(); }};
}

void subscriber::stop() {
  {
    std::lock_guard lock{mtx_};
    stopping_ = true;
    if (current_)
      current_->interrupt();
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

bool subscriber::sleep_for(milliseconds d) {
  std::unique_lock lock{mtx_};
  cv_.wait_for(lock, d, [&] { return stopping_.load(); });
  return !stopping_;
}

void subscriber::run() {
  backoff retry{options_.reconnect_min_s, options_.reconnect_max_s};
  while (!stopping_) {
    events_.state("connecting", "");
    auto before = counters_.connects.load();
    auto why = session();
    if (stopping_)
      break;
    if (counters_.connects != before)
      retry.reset(); // it was up: the first retry comes soon
    events_.state("degraded", why.message);
    if (!sleep_for(retry.next()))
      break;
  }
}

expected<std::vector<monitored_variable>> subscriber::resolve(client& c) {
  std::vector<monitored_variable> found;
  uint64_t unknown = 0;
  auto problem = [&](const std::string& what) {
    ++unknown;
    events_.problem(what);
  };

  // Names that are browse paths: one TranslateBrowsePathsToNodeIds for all of them.
  struct named {
    std::string text;
    bool folder = false;
    std::optional<node_id> id;
    std::string name; ///< the last path segment, for paths
  };
  std::vector<named> wanted;
  for (auto& n : options_.nodes)
    wanted.push_back({n, false, std::nullopt, ""});
  for (auto& n : options_.folders)
    wanted.push_back({n, true, std::nullopt, ""});
  translate_browse_paths_request tr;
  std::vector<size_t> tr_index;
  for (size_t i = 0; i < wanted.size(); ++i) {
    auto& w = wanted[i];
    if (is_node_id_text(w.text)) {
      auto id = parse_node_id(w.text);
      if (!id)
        return id.err(); // the flow check refuses these: only a bug gets here
      w.id = *id;
      continue;
    }
    auto path = parse_browse_path(w.text, options_.default_namespace);
    if (!path)
      return path.err();
    browse_path bp;
    bp.starting_node = node_id{0, objects_folder};
    for (auto& q : *path)
      bp.elements.push_back({.target_name = q});
    w.name = path->back().name;
    tr.browse_paths.push_back(std::move(bp));
    tr_index.push_back(i);
  }
  if (!tr.browse_paths.empty()) {
    auto res = c.call(tr, decode_translate_browse_paths_response);
    if (!res)
      return res.err();
    if (res->results.size() != tr_index.size())
      return make_error(ec::parse_error, "OPC UA server answered "
                                           + std::to_string(res->results.size()) + " of "
                                           + std::to_string(tr_index.size()) + " browse paths");
    for (size_t k = 0; k < tr_index.size(); ++k) {
      auto& w = wanted[tr_index[k]];
      auto& r = res->results[k];
      if (!is_good(r.status) || r.targets.empty())
        problem("unknown node: browse path " + w.text + " (" + status_name(r.status) + ")");
      else
        w.id = r.targets.front().target_id.node;
    }
  }

  // Node ids: read their browse names (which also tells whether they exist).
  read_request rd;
  std::vector<size_t> rd_index;
  for (size_t i = 0; i < wanted.size(); ++i)
    if (wanted[i].id && wanted[i].name.empty()) {
      read_value_id id;
      id.node = *wanted[i].id;
      id.attribute_id = attribute_browse_name;
      rd.nodes_to_read.push_back(std::move(id));
      rd_index.push_back(i);
    }
  if (!rd.nodes_to_read.empty()) {
    auto res = c.call(rd, decode_read_response);
    if (!res)
      return res.err();
    if (res->results.size() != rd_index.size())
      return make_error(ec::parse_error, "OPC UA server answered "
                                           + std::to_string(res->results.size()) + " of "
                                           + std::to_string(rd_index.size()) + " reads");
    for (size_t k = 0; k < rd_index.size(); ++k) {
      auto& w = wanted[rd_index[k]];
      auto& dv = res->results[k];
      auto status = dv.status.value_or(status_code{});
      auto* q = dv.value ? std::get_if<qualified_name>(&dv.value->value) : nullptr;
      if (!is_good(status) || !q) {
        problem("unknown node: " + w.text + " (" + status_name(status) + ")");
        w.id.reset();
      } else {
        w.name = q->name;
      }
    }
  }

  for (auto& w : wanted) {
    if (!w.id)
      continue;
    if (!w.folder) {
      found.push_back({w.name, *w.id});
      continue;
    }
    // Every variable below the folder, named by its path from it; objects are followed,
    // variables are not (their children are properties).
    struct level {
      node_id id;
      std::vector<std::string> path;
      int depth;
    };
    std::vector<level> todo{{*w.id, {}, 0}};
    size_t before = found.size();
    while (!todo.empty()) {
      browse_request br;
      std::vector<level> batch;
      for (size_t k = 0; k < todo.size() && k < 100; ++k) {
        browse_description d;
        d.node = todo[k].id;
        d.node_class_mask = node_class_object | node_class_variable;
        br.nodes_to_browse.push_back(d);
        batch.push_back(std::move(todo[k]));
      }
      todo.erase(todo.begin(), todo.begin() + static_cast<ptrdiff_t>(batch.size()));
      auto res = c.call(br, decode_browse_response);
      if (!res)
        return res.err();
      for (size_t k = 0; k < batch.size() && k < res->results.size(); ++k) {
        auto& r = res->results[k];
        if (!is_good(r.status)) {
          if (batch[k].depth == 0)
            problem("unknown node: folder " + w.text + " (" + status_name(r.status) + ")");
          continue;
        }
        if (!r.continuation_point.bytes.empty())
          events_.problem("folder " + w.text + ": the server split a browse result; only "
                          + "its first " + std::to_string(r.references.size())
                          + " references are used");
        for (auto& ref : r.references) {
          if (!ref.is_forward || ref.node.server_index != 0)
            continue;
          auto path = batch[k].path;
          path.push_back(ref.browse_name.name);
          if (ref.node_class == node_class_variable)
            found.push_back({join(path, '/'), ref.node.node});
          else if (ref.node_class == node_class_object && batch[k].depth + 1 < max_folder_depth)
            todo.push_back({ref.node.node, std::move(path), batch[k].depth + 1});
        }
      }
    }
    if (found.size() == before)
      events_.problem("folder " + w.text + " holds no variable");
  }
  counters_.unknown_nodes = unknown;
  // One variable named twice (a node and a folder holding it) is monitored once.
  std::vector<monitored_variable> unique;
  std::set<std::string> seen;
  for (auto& v : found)
    if (seen.insert(to_string(v.id)).second)
      unique.push_back(std::move(v));
  return unique;
}

error subscriber::session() {
  auto connected = client::connect(options_.connection);
  if (!connected)
    return connected.err();
  auto& c = **connected;
  {
    std::lock_guard lock{mtx_};
    if (stopping_)
      return make_error(ec::unavailable, "stopping");
    current_ = &c;
  }
  struct detach {
    subscriber* s;
    ~detach() {
      std::lock_guard lock{s->mtx_};
      s->current_ = nullptr;
    }
  } detach_on_exit{this};
  ++counters_.connects;
  auto why = monitor(c);
  if (grouper_) {
    hand_over(grouper_->flush()); // what was held for completion is all there will be
    grouper_.reset();
  }
  if (stopping_)
    c.close(); // deletes the subscription at the server
  return why;
}

error subscriber::monitor(client& c) {
  auto vars = resolve(c);
  if (!vars)
    return vars.err();
  counters_.variables = vars->size();
  if (vars->empty())
    return make_error(ec::not_found, "none of the variables named in the flow exist on "
                                       + options_.connection.endpoint_url);

  create_subscription_request cs;
  cs.requested_publishing_interval = options_.publishing_interval_ms;
  // Keep-alives at least every 5 s, and a lifetime long enough to ride out a slow engine.
  cs.requested_max_keep_alive_count = std::max<uint32_t>(
    1, static_cast<uint32_t>(5000 / std::max(1.0, options_.publishing_interval_ms)));
  cs.requested_lifetime_count = cs.requested_max_keep_alive_count * 6;
  auto sub = c.call(cs, decode_create_subscription_response);
  if (!sub)
    return sub.err();

  create_monitored_items_request mi;
  mi.subscription_id = sub->subscription_id;
  mi.timestamps = timestamps_to_return::both;
  for (size_t i = 0; i < vars->size(); ++i) {
    monitored_item_create_request item;
    item.item_to_monitor.node = (*vars)[i].id;
    item.requested_parameters.client_handle = static_cast<uint32_t>(i);
    item.requested_parameters.sampling_interval = options_.sampling_interval_ms;
    item.requested_parameters.queue_size = options_.queue_size;
    item.requested_parameters.filter = data_change_filter(options_.trigger);
    mi.items_to_create.push_back(std::move(item));
  }
  double revised_sampling = 0;
  uint32_t revised_queue = 0;
  // Large address spaces: items in requests of at most 1000.
  for (size_t from = 0; from < mi.items_to_create.size(); from += 1000) {
    create_monitored_items_request part;
    part.subscription_id = mi.subscription_id;
    part.timestamps = mi.timestamps;
    auto last = std::min(mi.items_to_create.size(), from + 1000);
    part.items_to_create.assign(mi.items_to_create.begin() + static_cast<ptrdiff_t>(from),
                                mi.items_to_create.begin() + static_cast<ptrdiff_t>(last));
    auto res = c.call(part, decode_create_monitored_items_response);
    if (!res)
      return res.err();
    for (size_t k = 0; k < res->results.size() && from + k < vars->size(); ++k) {
      if (from + k == 0) {
        revised_sampling = res->results[k].revised_sampling_interval;
        revised_queue = res->results[k].revised_queue_size;
      }
      if (!is_good(res->results[k].status)) {
        ++counters_.unknown_nodes;
        events_.problem("cannot monitor " + (*vars)[from + k].name + " ("
                        + to_string((*vars)[from + k].id)
                        + "): " + status_name(res->results[k].status));
      }
    }
  }
  // What the server granted, which may differ from what the flow asked for.
  events_.state("running", std::to_string(vars->size()) + " variables, publishing every "
                             + std::to_string(int64_t(sub->revised_publishing_interval))
                             + " ms, sampling every " + std::to_string(int64_t(revised_sampling))
                             + " ms, queue " + std::to_string(revised_queue));

  // A server that says nothing for this long is gone (keep-alives come far more often).
  auto silence = milliseconds{static_cast<int64_t>(sub->revised_publishing_interval
                                                   * sub->revised_max_keep_alive_count * 2)}
                 + options_.connection.timeout;
  std::vector<subscription_acknowledgement> acks;
  size_t outstanding = 0;
  std::optional<uint32_t> last_sequence;
  auto last_heard = steady_clock::now();
  auto send_publish = [&]() -> expected<void> {
    publish_request p;
    p.header = c.next_header();
    // The server holds a Publish until it has something; the timeout hint must outlast that.
    p.header.timeout_hint = static_cast<uint32_t>(silence.count() * 2);
    p.subscription_acknowledgements = std::move(acks);
    acks.clear();
    auto id = c.send(encode(p));
    if (!id)
      return id.err();
    ++outstanding;
    return {};
  };
  grouper_.emplace(*vars, options_.stream);
  auto interval = milliseconds{std::max<int64_t>(1, int64_t(sub->revised_publishing_interval))};
  auto held_since = steady_clock::now();
  while (!stopping_) {
    while (outstanding < publish_window)
      if (auto ok = send_publish(); !ok)
        return ok.err();
    if (auto ok = c.renew_if_due(); !ok)
      return ok.err();
    // Records held for completion wait one publishing interval at most.
    if (grouper_->holding() && steady_clock::now() - held_since >= interval)
      hand_over(grouper_->flush());
    auto r = c.receive(std::min(milliseconds{200}, interval));
    if (!r)
      return r.err();
    if (!*r) {
      if (steady_clock::now() - last_heard > silence)
        return make_error(ec::timeout, "the OPC UA server sent nothing for "
                                         + std::to_string(silence.count()) + " ms");
      continue;
    }
    last_heard = steady_clock::now();
    auto res = decode_publish_response((*r)->body);
    if (!res) {
      if (auto fault = as_service_fault((*r)->body); fault && *fault) {
        auto s = (*fault)->header.service_result;
        if (s.code == 0x80780000u) { // BadTooManyPublishRequests: the server holds enough
          --outstanding;
          continue;
        }
        return make_error(ec::unavailable, "Publish refused by the server: " + status_name(s));
      }
      return res.err();
    }
    --outstanding;
    ++counters_.publishes;
    auto& msg = res->message;
    if (msg.notifications.empty())
      continue; // a keep-alive
    if (last_sequence && msg.sequence_number != *last_sequence + 1
        && msg.sequence_number > *last_sequence)
      counters_.lost += msg.sequence_number - *last_sequence - 1;
    last_sequence = msg.sequence_number;
    acks.push_back({res->subscription_id, msg.sequence_number});
    auto ingest = now_ns();
    for (auto& n : msg.notifications) {
      if (auto* dc = std::get_if<data_change_notification>(&n)) {
        counters_.values += dc->monitored_items.size();
        for (auto& item : dc->monitored_items)
          if (item.value.status && overflowed(*item.value.status))
            ++counters_.overflows;
        hand_over(grouper_->add(*dc, ingest, next_seq_, res->more_notifications));
        held_since = steady_clock::now();
      } else if (auto* sc = std::get_if<status_change_notification>(&n)) {
        return make_error(ec::unavailable,
                          "the server ended the subscription: " + status_name(sc->status));
      }
    }
  }
  return make_error(ec::unavailable, "stopped");
}

void subscriber::hand_over(std::vector<record> records) {
  if (records.empty())
    return;
  record_batch batch;
  batch.records = std::move(records);
  events_.values(std::move(batch));
}

} // namespace fabrik::opcua
