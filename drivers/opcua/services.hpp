#pragma once
// OPC UA session and view/attribute services (OPC 10000-4, Part 4): CreateSession (5.6.2),
// ActivateSession (5.6.3), CloseSession (5.6.4), Browse (5.8.2), TranslateBrowsePathsToNodeIds
// (5.8.4), Read (5.10.2), CreateMonitoredItems (5.12.2), CreateSubscription (5.13.2), Publish
// (5.13.5) and DeleteSubscriptions (5.13.8), with the structures they carry (7.1
// ApplicationDescription, 7.10 EndpointDescription, 7.32 SignatureData, 7.33
// SignedSoftwareCertificate, 7.37 UserTokenPolicy, 7.36 user identity tokens, 7.26 ReadValueId, 7.5
// BrowseDescription, 7.6 BrowseResult, 7.30 ReferenceDescription, 7.31 RelativePath, 7.45
// ViewDescription, 7.21 MonitoringParameters, 7.22 MonitoringMode, 7.23 NotificationMessage, 7.20
// NotificationData: DataChangeNotification, StatusChangeNotification, EventNotificationList).
// Field order is the Part 6 binary encoding (5.2.6: structures are their fields in order).
// Pure code: no sockets, no CAF. Built on encoding.hpp and transport.hpp.
//
// Every message has an encoder (whole body, type NodeId included) and a decoder that reads
// exactly one whole body of its type. A response decoder handed a ServiceFault refuses it
// naming the fault's status code. Decoders never throw and never read past their input;
// arrays are checked against max_array_length and against the bytes left before anything
// is allocated. DiagnosticInfo arrays must be empty (or hold only empty DiagnosticInfos,
// which are dropped).
//
// Encoding choices: an empty String or ByteString field of these services is written null
// (length -1), and so is the name of an empty QualifiedName; empty arrays are written with
// length 0. Decoders read null as empty, so every message round-trips.

#include "drivers/opcua/encoding.hpp"
#include "drivers/opcua/transport.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fabrik::opcua {

/// Binary encoding ids (ns=0) of the service bodies and identity tokens.
enum : uint32_t {
  anonymous_identity_token_id = 321,
  user_name_identity_token_id = 324,
  create_session_request_id = 461,
  create_session_response_id = 464,
  activate_session_request_id = 467,
  activate_session_response_id = 470,
  close_session_request_id = 473,
  close_session_response_id = 476,
  browse_request_id = 527,
  browse_response_id = 530,
  translate_browse_paths_request_id = 554,
  translate_browse_paths_response_id = 557,
  read_request_id = 631,
  read_response_id = 634,
  create_monitored_items_request_id = 751,
  create_monitored_items_response_id = 754,
  create_subscription_request_id = 787,
  create_subscription_response_id = 790,
  publish_request_id = 826,
  publish_response_id = 829,
  delete_subscriptions_request_id = 847,
  delete_subscriptions_response_id = 850,
};

/// Binary encoding ids (ns=0) of the NotificationData a NotificationMessage carries.
enum : uint32_t {
  data_change_notification_id = 811,
  status_change_notification_id = 820,
  event_notification_list_id = 916,
};

/// Attribute ids (Part 6 A.1) ingest uses.
enum : uint32_t {
  attribute_node_id = 1,
  attribute_node_class = 2,
  attribute_browse_name = 3,
  attribute_display_name = 4,
  attribute_value = 13,
  attribute_data_type = 14,
};

/// Well-known reference types (ns=0).
enum : uint32_t {
  references_type = 31,
  hierarchical_references_type = 33,
  has_component_type = 47,
  has_property_type = 46,
  organizes_type = 35,
};

// ---- Structures -------------------------------------------------------------------------

enum class application_type : int32_t {
  server = 0,
  client = 1,
  client_and_server = 2,
  discovery_server = 3
};

struct application_description {
  std::string application_uri;
  std::string product_uri;
  localized_text application_name;
  application_type type = application_type::client;
  std::string gateway_server_uri;
  std::string discovery_profile_uri;
  std::vector<std::string> discovery_urls;
  bool operator==(const application_description&) const = default;
};

struct signature_data {
  std::string algorithm;
  byte_string signature;
  bool operator==(const signature_data&) const = default;
};

struct signed_software_certificate {
  byte_string certificate_data;
  byte_string signature;
  bool operator==(const signed_software_certificate&) const = default;
};

enum class user_token_type : int32_t {
  anonymous = 0,
  user_name = 1,
  certificate = 2,
  issued_token = 3
};

struct user_token_policy {
  std::string policy_id;
  user_token_type token_type = user_token_type::anonymous;
  std::string issued_token_type;
  std::string issuer_endpoint_url;
  std::string security_policy_uri;
  bool operator==(const user_token_policy&) const = default;
};

struct endpoint_description {
  std::string endpoint_url;
  application_description server;
  byte_string server_certificate;
  security_mode mode = security_mode::none;
  std::string security_policy_uri;
  std::vector<user_token_policy> user_identity_tokens;
  std::string transport_profile_uri;
  uint8_t security_level = 0;
  bool operator==(const endpoint_description&) const = default;
};

struct anonymous_identity_token {
  std::string policy_id;
  bool operator==(const anonymous_identity_token&) const = default;
};

/// For SecurityPolicy None the password travels as plain bytes, encryption algorithm null.
struct user_name_identity_token {
  std::string policy_id;
  std::string user_name;
  byte_string password;
  std::string encryption_algorithm;
  bool operator==(const user_name_identity_token&) const = default;
};

using user_identity_token = std::variant<anonymous_identity_token, user_name_identity_token>;

enum class timestamps_to_return : int32_t { source = 0, server = 1, both = 2, neither = 3 };

struct read_value_id {
  node_id node;
  uint32_t attribute_id = attribute_value;
  std::string index_range; ///< null when empty
  qualified_name data_encoding; ///< null (0, null name) when empty
  bool operator==(const read_value_id&) const = default;
};

struct view_description {
  node_id view_id; ///< null (i=0): the whole address space
  date_time timestamp;
  uint32_t view_version = 0;
  bool operator==(const view_description&) const = default;
};

enum class browse_direction : int32_t { forward = 0, inverse = 1, both = 2 };

/// BrowseResultMask bits (Part 4 7.5): 0x3f asks for every field.
inline constexpr uint32_t browse_result_all = 0x3f;

struct browse_description {
  node_id node;
  browse_direction direction = browse_direction::forward;
  node_id reference_type_id{0, uint32_t{hierarchical_references_type}};
  bool include_subtypes = true;
  uint32_t node_class_mask = 0; ///< 0: every node class
  uint32_t result_mask = browse_result_all;
  bool operator==(const browse_description&) const = default;
};

/// NodeClass values (Part 4 7.24).
enum : int32_t {
  node_class_unspecified = 0,
  node_class_object = 1,
  node_class_variable = 2,
  node_class_method = 4,
  node_class_object_type = 8,
  node_class_variable_type = 16,
  node_class_reference_type = 32,
  node_class_data_type = 64,
  node_class_view = 128,
};

struct reference_description {
  node_id reference_type_id;
  bool is_forward = true;
  expanded_node_id node;
  qualified_name browse_name;
  localized_text display_name;
  int32_t node_class = node_class_unspecified;
  expanded_node_id type_definition;
  bool operator==(const reference_description&) const = default;
};

struct browse_result {
  status_code status;
  byte_string continuation_point;
  std::vector<reference_description> references;
  bool operator==(const browse_result&) const = default;
};

struct relative_path_element {
  node_id reference_type_id{0, uint32_t{hierarchical_references_type}};
  bool is_inverse = false;
  bool include_subtypes = true;
  qualified_name target_name;
  bool operator==(const relative_path_element&) const = default;
};

struct browse_path {
  node_id starting_node;
  std::vector<relative_path_element> elements; ///< the RelativePath
  bool operator==(const browse_path&) const = default;
};

struct browse_path_target {
  expanded_node_id target_id;
  uint32_t remaining_path_index = 0xffffffffu; ///< UInt32 max: the whole path was followed
  bool operator==(const browse_path_target&) const = default;
};

struct browse_path_result {
  status_code status;
  std::vector<browse_path_target> targets;
  bool operator==(const browse_path_result&) const = default;
};

enum class monitoring_mode : int32_t { disabled = 0, sampling = 1, reporting = 2 };

struct monitoring_parameters {
  uint32_t client_handle = 0; ///< the client's name for the item, echoed in notifications
  double sampling_interval = -1; ///< ms; -1: the subscription's publishing interval
  extension_object filter; ///< null: the default DataChangeFilter
  uint32_t queue_size = 1;
  bool discard_oldest = true;
  bool operator==(const monitoring_parameters&) const = default;
};

enum class data_change_trigger : int32_t {
  status = 0,
  status_value = 1,
  status_value_timestamp = 2
};
inline constexpr uint32_t data_change_filter_id = 724;

/// A DataChangeFilter (Part 4 7.22.2) without deadband, as MonitoringParameters carry it:
/// status_value_timestamp also reports a value written again unchanged.
extension_object data_change_filter(data_change_trigger trigger);

struct monitored_item_create_request {
  read_value_id item_to_monitor;
  monitoring_mode mode = monitoring_mode::reporting;
  monitoring_parameters requested_parameters;
  bool operator==(const monitored_item_create_request&) const = default;
};

struct monitored_item_create_result {
  status_code status;
  uint32_t monitored_item_id = 0;
  double revised_sampling_interval = 0;
  uint32_t revised_queue_size = 0;
  extension_object filter_result;
  bool operator==(const monitored_item_create_result&) const = default;
};

struct subscription_acknowledgement {
  uint32_t subscription_id = 0;
  uint32_t sequence_number = 0;
  bool operator==(const subscription_acknowledgement&) const = default;
};

struct monitored_item_notification {
  uint32_t client_handle = 0;
  data_value value;
  bool operator==(const monitored_item_notification&) const = default;
};

/// DataChangeNotification (i=811); its DiagnosticInfos must be empty.
struct data_change_notification {
  std::vector<monitored_item_notification> monitored_items;
  bool operator==(const data_change_notification&) const = default;
};

/// StatusChangeNotification (i=820); its DiagnosticInfo must be empty.
struct status_change_notification {
  status_code status;
  bool operator==(const status_change_notification&) const = default;
};

/// EventNotificationList (i=916): ingest does not subscribe to events, so its body is kept
/// as bytes, undecoded.
struct event_notification_list {
  std::string body;
  bool operator==(const event_notification_list&) const = default;
};

/// One NotificationData ExtensionObject: the three known types in binary encoding are
/// decoded, anything else is kept as the raw ExtensionObject.
using notification_data = std::variant<data_change_notification, status_change_notification,
                                       event_notification_list, extension_object>;

struct notification_message {
  uint32_t sequence_number = 0;
  date_time publish_time;
  std::vector<notification_data> notifications; ///< the NotificationData array
  bool operator==(const notification_message&) const = default;
};

// ---- Messages ---------------------------------------------------------------------------

struct create_session_request {
  request_header header;
  application_description client_description;
  std::string server_uri;
  std::string endpoint_url;
  std::string session_name;
  byte_string client_nonce;
  byte_string client_certificate; ///< null for SecurityPolicy None
  double requested_session_timeout = 60'000; ///< ms
  uint32_t max_response_message_size = 0; ///< 0: no limit
  bool operator==(const create_session_request&) const = default;
};

struct create_session_response {
  response_header header;
  node_id session_id;
  node_id authentication_token; ///< goes into every later RequestHeader
  double revised_session_timeout = 0;
  byte_string server_nonce;
  byte_string server_certificate;
  std::vector<endpoint_description> server_endpoints;
  std::vector<signed_software_certificate> server_software_certificates;
  signature_data server_signature;
  uint32_t max_request_message_size = 0;
  bool operator==(const create_session_response&) const = default;
};

struct activate_session_request {
  request_header header;
  signature_data client_signature; ///< null for SecurityPolicy None
  std::vector<signed_software_certificate> client_software_certificates;
  std::vector<std::string> locale_ids;
  user_identity_token identity = anonymous_identity_token{};
  signature_data user_token_signature; ///< null for SecurityPolicy None
  bool operator==(const activate_session_request&) const = default;
};

struct activate_session_response {
  response_header header;
  byte_string server_nonce;
  std::vector<status_code> results;
  bool operator==(const activate_session_response&) const = default;
};

struct close_session_request {
  request_header header;
  bool delete_subscriptions = true;
  bool operator==(const close_session_request&) const = default;
};

struct close_session_response {
  response_header header;
  bool operator==(const close_session_response&) const = default;
};

struct read_request {
  request_header header;
  double max_age = 0; ///< ms; 0: read the current value
  timestamps_to_return timestamps = timestamps_to_return::both;
  std::vector<read_value_id> nodes_to_read;
  bool operator==(const read_request&) const = default;
};

struct read_response {
  response_header header;
  std::vector<data_value> results;
  bool operator==(const read_response&) const = default;
};

struct browse_request {
  request_header header;
  view_description view;
  uint32_t requested_max_references_per_node = 0; ///< 0: no limit
  std::vector<browse_description> nodes_to_browse;
  bool operator==(const browse_request&) const = default;
};

struct browse_response {
  response_header header;
  std::vector<browse_result> results;
  bool operator==(const browse_response&) const = default;
};

struct translate_browse_paths_request {
  request_header header;
  std::vector<browse_path> browse_paths;
  bool operator==(const translate_browse_paths_request&) const = default;
};

struct translate_browse_paths_response {
  response_header header;
  std::vector<browse_path_result> results;
  bool operator==(const translate_browse_paths_response&) const = default;
};

struct create_subscription_request {
  request_header header;
  double requested_publishing_interval = 1000; ///< ms
  uint32_t requested_lifetime_count = 60; ///< publishing intervals; >= 3 x keep-alive
  uint32_t requested_max_keep_alive_count = 10;
  uint32_t max_notifications_per_publish = 0; ///< 0: no limit
  bool publishing_enabled = true;
  uint8_t priority = 0;
  bool operator==(const create_subscription_request&) const = default;
};

struct create_subscription_response {
  response_header header;
  uint32_t subscription_id = 0;
  double revised_publishing_interval = 0;
  uint32_t revised_lifetime_count = 0;
  uint32_t revised_max_keep_alive_count = 0;
  bool operator==(const create_subscription_response&) const = default;
};

struct create_monitored_items_request {
  request_header header;
  uint32_t subscription_id = 0;
  timestamps_to_return timestamps = timestamps_to_return::source;
  std::vector<monitored_item_create_request> items_to_create;
  bool operator==(const create_monitored_items_request&) const = default;
};

struct create_monitored_items_response {
  response_header header;
  std::vector<monitored_item_create_result> results;
  bool operator==(const create_monitored_items_response&) const = default;
};

struct publish_request {
  request_header header;
  std::vector<subscription_acknowledgement> subscription_acknowledgements;
  bool operator==(const publish_request&) const = default;
};

struct publish_response {
  response_header header;
  uint32_t subscription_id = 0;
  std::vector<uint32_t> available_sequence_numbers;
  bool more_notifications = false;
  notification_message message;
  std::vector<status_code> results; ///< one per acknowledgement sent
  bool operator==(const publish_response&) const = default;
};

struct delete_subscriptions_request {
  request_header header;
  std::vector<uint32_t> subscription_ids;
  bool operator==(const delete_subscriptions_request&) const = default;
};

struct delete_subscriptions_response {
  response_header header;
  std::vector<status_code> results;
  bool operator==(const delete_subscriptions_response&) const = default;
};

/// Whole bodies, type NodeId included.
std::string encode(const create_session_request& m);
std::string encode(const create_session_response& m);
std::string encode(const activate_session_request& m);
std::string encode(const activate_session_response& m);
std::string encode(const close_session_request& m);
std::string encode(const close_session_response& m);
std::string encode(const read_request& m);
std::string encode(const read_response& m);
std::string encode(const browse_request& m);
std::string encode(const browse_response& m);
std::string encode(const translate_browse_paths_request& m);
std::string encode(const translate_browse_paths_response& m);
std::string encode(const create_subscription_request& m);
std::string encode(const create_subscription_response& m);
std::string encode(const create_monitored_items_request& m);
std::string encode(const create_monitored_items_response& m);
std::string encode(const publish_request& m);
std::string encode(const publish_response& m);
std::string encode(const delete_subscriptions_request& m);
std::string encode(const delete_subscriptions_response& m);

/// The ExtensionObject a NotificationData travels in (a raw one is returned as is).
extension_object to_extension_object(const notification_data& n);
/// Decodes DataChangeNotification, StatusChangeNotification and EventNotificationList in
/// binary encoding (refusing a malformed body); keeps any other ExtensionObject raw.
expected<notification_data> to_notification_data(const extension_object& e);

/// The ExtensionObject an identity token travels in.
extension_object to_extension_object(const user_identity_token& t);
/// Refuses a type other than Anonymous- and UserNameIdentityToken in binary encoding.
expected<user_identity_token> from_extension_object(const extension_object& e);

expected<create_session_request> decode_create_session_request(std::string_view body);
expected<create_session_response> decode_create_session_response(std::string_view body);
expected<activate_session_request> decode_activate_session_request(std::string_view body);
expected<activate_session_response> decode_activate_session_response(std::string_view body);
expected<close_session_request> decode_close_session_request(std::string_view body);
expected<close_session_response> decode_close_session_response(std::string_view body);
expected<read_request> decode_read_request(std::string_view body);
expected<read_response> decode_read_response(std::string_view body);
expected<browse_request> decode_browse_request(std::string_view body);
expected<browse_response> decode_browse_response(std::string_view body);
expected<translate_browse_paths_request>
decode_translate_browse_paths_request(std::string_view body);
expected<translate_browse_paths_response>
decode_translate_browse_paths_response(std::string_view body);
expected<create_subscription_request> decode_create_subscription_request(std::string_view body);
expected<create_subscription_response> decode_create_subscription_response(std::string_view body);
expected<create_monitored_items_request>
decode_create_monitored_items_request(std::string_view body);
expected<create_monitored_items_response>
decode_create_monitored_items_response(std::string_view body);
expected<publish_request> decode_publish_request(std::string_view body);
expected<publish_response> decode_publish_response(std::string_view body);
expected<delete_subscriptions_request> decode_delete_subscriptions_request(std::string_view body);
expected<delete_subscriptions_response> decode_delete_subscriptions_response(std::string_view body);

} // namespace fabrik::opcua
