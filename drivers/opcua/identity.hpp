#pragma once
// Who the client logs in as (OPC 10000-4 5.6.3, 7.36, 7.37): picks the server's user
// token policy for the credentials and builds the identity token for ActivateSession.
// Servers usually ask for the password encrypted with their certificate even on a
// SecurityPolicy None channel (the token policy names its own security policy), so this
// is the one place the client uses OpenSSL.

#include "drivers/opcua/services.hpp"

#include <string>
#include <vector>

namespace fabrik::opcua {

struct credentials {
  std::string user; ///< empty: anonymous
  std::string password;
};

/// The identity token for `who` on the endpoint with SecurityPolicy None among `endpoints`
/// (CreateSessionResponse.serverEndpoints). A password travels plain when the policy has
/// no security policy (or None), else encrypted (Part 4 7.36.2.2: length, password, server
/// nonce) with the server certificate: RSA PKCS#1 v1.5 for Basic128Rsa15, RSA-OAEP SHA-1
/// for Basic256, Basic256Sha256 and Aes128_Sha256_RsaOaep, RSA-OAEP SHA-256 for
/// Aes256_Sha256_RsaPss. Refuses (invalid_argument) when the server offers no policy for
/// this kind of login, or one fabrik cannot encrypt for.
expected<user_identity_token> make_identity(const std::vector<endpoint_description>& endpoints,
                                            const credentials& who,
                                            const byte_string& server_certificate,
                                            const byte_string& server_nonce);

/// RSA encryption of `plain` with the public key of a DER certificate (the first of a
/// chain), in as many blocks as the key size needs. `padding`: the token's encryption
/// algorithm URI (rsa-1_5, rsa-oaep, rsa-oaep-sha2-256). Exposed for tests.
expected<std::string> rsa_encrypt(std::string_view der_certificate, std::string_view padding,
                                  std::string_view plain);

inline constexpr std::string_view rsa_15_uri = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";
inline constexpr std::string_view rsa_oaep_uri = "http://www.w3.org/2001/04/xmlenc#rsa-oaep";
inline constexpr std::string_view rsa_oaep_sha256_uri =
  "http://opcfoundation.org/UA/security/rsa-oaep-sha2-256";

} // namespace fabrik::opcua
