import { DEFAULT_CERT_DIR } from '../src/config.js'
import { generateDevCertificates } from '../src/dev-certs.js'

// Writes a fresh development CA and server certificate into certs/,
// replacing any there. `npm start` only generates them when absent.
const paths = generateDevCertificates(DEFAULT_CERT_DIR)
process.stdout.write(
  `wrote ${paths.caCert}, ${paths.serverCert} and ${paths.serverKey} (valid for localhost, 127.0.0.1 and ::1)\n`,
)
