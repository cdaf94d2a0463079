// pm2 process file: `pm2 start ecosystem.config.js` runs the hub and one local sidecar and keeps them alive.
// Override paths with AGENTCOM_DATA_DIR and AGENTCOM_SIDECAR_CONFIG; logs go to ~/.pm2/logs. A process that exits
// with 78 (EX_CONFIG: a missing or invalid configuration) is left stopped instead of restarted in a loop.
const path = require("path");
const os = require("os");
const python = process.env.AGENTCOM_PYTHON || path.join(__dirname, ".venv", "bin", "python");
const home = os.homedir();

module.exports = {
  apps: [
    {
      name: "agentcom-hub",
      script: python,
      args: ["-m", "hub", "--data-dir", process.env.AGENTCOM_DATA_DIR || path.join(home, ".agentcom", "hub")],
      interpreter: "none",
      cwd: __dirname,
      autorestart: true,
      max_restarts: 50,
      min_uptime: "5s",
      restart_delay: 2000,
      kill_timeout: 10000,
      stop_exit_codes: [78], // a configuration error: restarting cannot fix it (the log says what to change)
    },
    {
      name: "agentcom-sidecar",
      script: python,
      args: ["-m", "sidecar", "--config",
             process.env.AGENTCOM_SIDECAR_CONFIG || path.join(home, ".agentcom", "sidecar", "sidecar.toml")],
      interpreter: "none",
      cwd: __dirname,
      autorestart: true,
      max_restarts: 50,
      min_uptime: "5s",
      restart_delay: 2000,
      max_memory_restart: "500M",
      kill_timeout: 15000,
      stop_exit_codes: [78], // no or an invalid sidecar.toml: fix it, then `pm2 restart agentcom-sidecar`
      env: { PM2_PROCESS_NAME: "agentcom-sidecar" },
    },
  ],
};
