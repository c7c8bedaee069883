#include "engine/workflow_hub.hpp"

#include "flows/kind.hpp"

#include <spdlog/spdlog.h>

namespace fabrik {
namespace {

const settings_table workflows_settings{{
  {.name = "watch",
   .type = setting_type::string,
   .default_value = "workflows",
   .doc = "directory watched for workflow zips (relative to the flow file); a zip copied or "
          "moved in is validated, stored as a new version and deployed"},
  {.name = "tdp",
   .type = setting_type::number,
   .default_value = "85",
   .doc = "the CPU's thermal design power in watts, for the energy estimate of training "
          "runs when RAPL counters are not readable",
   .min = 1,
   .max = 2000},
}};

const section workflows_section{
  .name = "workflows",
  .summary = "where workflow packages come from, and how runs are measured",
  .settings = &workflows_settings,
  .single = true,
};

FABRIK_REGISTER_SECTION(workflows_section);

} // namespace

expected<std::unique_ptr<workflow_hub>> workflow_hub::start(std::shared_ptr<registry> reg,
                                                            std::filesystem::path watch_dir,
                                                            added_fn on_added) {
  std::unique_ptr<workflow_hub> hub{new workflow_hub};
  hub->reg_ = std::move(reg);
  hub->on_added_ = std::move(on_added);
  hub->st_.name = "workflows";
  hub->st_.kind = "watched directory";
  hub->st_.state = "running";
  hub->st_.details["dir"] = watch_dir.string();
  auto* self = hub.get();
  auto w =
    dir_watcher::start(watch_dir, [self](const std::filesystem::path& f) { self->on_file(f); });
  if (!w)
    return w.err();
  hub->watcher_ = std::move(*w);
  spdlog::info("workflows: watching {} for workflow zips", watch_dir.string());
  return hub;
}

void workflow_hub::on_file(const std::filesystem::path& file) {
  {
    std::lock_guard lock{mutex_};
    ++st_.in;
  }
  if (auto bytes = read_zip_file(file))
    add(*bytes, file.filename().string());
  else
    refuse(file.filename().string(), bytes.err());
}

void workflow_hub::refuse(const std::string& source, const error& why) {
  std::lock_guard lock{mutex_};
  ++st_.errors;
  st_.last_error = source + ": " + why.message;
  spdlog::error("workflows: refused {}: {}", source, why.message);
}

expected<add_package_result> workflow_hub::add(std::string_view zip, const std::string& source) {
  auto added = reg_->add_package(zip, source);
  if (!added) {
    refuse(source, added.err());
    return added;
  }
  auto& v = added->version;
  if (!added->added) {
    spdlog::info("workflows: {} is {} {} (#{}), stored already", source, v.name, v.version, v.seq);
    return added;
  }
  {
    std::lock_guard lock{mutex_};
    ++st_.out;
    st_.details["newest"] = v.name + " " + v.version + " (#" + std::to_string(v.seq) + ")";
  }
  spdlog::info("workflows: stored {} {} as #{} (sha256 {}) from {}", v.name, v.version, v.seq,
               v.sha256.substr(0, 12), source);
  if (on_added_)
    on_added_(v);
  return added;
}

actor_status workflow_hub::status() const {
  std::lock_guard lock{mutex_};
  return st_;
}

} // namespace fabrik
