"""SRS directive names by context, taken from SRS's annotated full.conf (MIT, the SRS authors).

Generated once from tests/data/srs-trunk-conf/conf/full.conf; a context is the dotted path of
block names ("main" for the top level, vhost names dropped).  srv uses it to tell a directive SRS
knows but srv does not implement (a warning) from a typo (an error).  Names SRS accepts that
the full.conf leaves out or comments out are added at the end by hand.
"""

from __future__ import annotations

SRS_KNOWN: dict[str, frozenset[str]] = {
    "circuit_breaker": frozenset(
        {
            "critical_pulse", "critical_threshold", "dying_pulse", "dying_threshold", "enabled",
            "high_pulse", "high_threshold",
        }
    ),
    "exporter": frozenset(
        {
            "enabled", "label", "listen", "tag",
        }
    ),
    "heartbeat": frozenset(
        {
            "device_id", "enabled", "interval", "ports", "summaries", "url",
        }
    ),
    "http_api": frozenset(
        {
            "auth", "crossdomain", "enabled", "https", "listen", "raw_api",
        }
    ),
    "http_api.auth": frozenset(
        {
            "enabled", "password", "username",
        }
    ),
    "http_api.https": frozenset(
        {
            "cert", "enabled", "key", "listen",
        }
    ),
    "http_api.raw_api": frozenset(
        {
            "allow_reload", "enabled",
        }
    ),
    "http_server": frozenset(
        {
            "crossdomain", "dir", "enabled", "https", "listen",
        }
    ),
    "http_server.https": frozenset(
        {
            "cert", "enabled", "key", "listen",
        }
    ),
    "main": frozenset(
        {
            "asprocess", "auto_reload_for_docker", "chunk_size", "circuit_breaker", "daemon",
            "disable_daemon_for_docker", "empty_ip_ok", "exporter", "ff_log_dir",
            "ff_log_level", "first_wait_for_qlv", "force_grace_quit", "grace_final_wait",
            "grace_start_wait", "heartbeat", "http_api", "http_server", "in_docker", "include",
            "inotify_auto_reload", "is_full", "listen", "max_connections", "pid",
            "pithy_print_ms", "query_latest_version", "rtc_server", "server_id", "srs_log_file",
            "srs_log_level", "srs_log_level_v2", "srs_log_tank", "srt_server", "stats",
            "stream_caster", "tcmalloc_release_rate", "tencentcloud_apm", "tencentcloud_cls",
            "threads", "utc_time", "vhost", "work_dir",
        }
    ),
    "rtc_server": frozenset(
        {
            "api_as_candidates", "black_hole", "candidate", "ecdsa", "enabled", "encrypt",
            "ip_family", "keep_api_domain", "listen", "merge_nalus", "protocol",
            "resolve_api_domain", "reuseport", "tcp", "use_auto_detect_network_ip",
        }
    ),
    "rtc_server.black_hole": frozenset(
        {
            "addr", "enabled",
        }
    ),
    "rtc_server.tcp": frozenset(
        {
            "enabled", "listen",
        }
    ),
    "srt_server": frozenset(
        {
            "connect_timeout", "default_app", "enabled", "latency", "listen", "maxbw", "mss",
            "passphrase", "pbkeylen", "peer_idle_timeout", "peerlatency", "recvbuf",
            "recvlatency", "sendbuf", "tlpktdrop", "tsbpdmode",
        }
    ),
    "stats": frozenset(
        {
            "disk", "enabled", "network",
        }
    ),
    "stream_caster": frozenset(
        {
            "caster", "enabled", "listen", "output", "sip",
        }
    ),
    "stream_caster.sip": frozenset(
        {
            "candidate", "enabled", "listen", "reinvite", "timeout",
        }
    ),
    "tencentcloud_apm": frozenset(
        {
            "debug_logging", "enabled", "endpoint", "service_name", "team", "token",
        }
    ),
    "tencentcloud_cls": frozenset(
        {
            "debug_logging", "enabled", "endpoint", "heartbeat_ratio", "label", "secret_id",
            "secret_key", "stat_heartbeat", "stat_streams", "streams_ratio", "tag", "topic_id",
        }
    ),
    "threads": frozenset(
        {
            "interval",
        }
    ),
    "vhost": frozenset(
        {
            "chunk_size", "cluster", "dash", "dvr", "enabled", "exec", "forward", "hds", "hls",
            "http_hooks", "http_remux", "http_static", "in_ack_size", "ingest", "min_latency",
            "out_ack_size", "play", "publish", "refer", "rtc", "security", "srt", "tcp_nodelay",
            "transcode",
        }
    ),
    "vhost.cluster": frozenset(
        {
            "coworkers", "debug_srs_upnode", "follow_client", "mode", "origin",
            "origin_cluster", "protocol", "token_traverse", "vhost",
        }
    ),
    "vhost.dash": frozenset(
        {
            "dash_cleanup", "dash_dispose", "dash_fragment", "dash_mpd_file", "dash_path",
            "dash_timeshift", "dash_update_period", "dash_window_size", "enabled",
        }
    ),
    "vhost.dvr": frozenset(
        {
            "dvr_apply", "dvr_duration", "dvr_path", "dvr_plan", "dvr_wait_keyframe", "enabled",
            "time_jitter",
        }
    ),
    "vhost.exec": frozenset(
        {
            "enabled", "publish",
        }
    ),
    "vhost.forward": frozenset(
        {
            "backend", "destination", "enabled",
        }
    ),
    "vhost.hds": frozenset(
        {
            "enabled", "hds_fragment", "hds_path", "hds_window",
        }
    ),
    "vhost.hls": frozenset(
        {
            "enabled", "hls_acodec", "hls_aof_ratio", "hls_cleanup", "hls_ctx", "hls_dispose",
            "hls_dts_directly", "hls_entry_prefix", "hls_fragment", "hls_fragments_per_key",
            "hls_key_file", "hls_key_file_path", "hls_key_url", "hls_keys", "hls_m3u8_file",
            "hls_nb_notify", "hls_on_error", "hls_path", "hls_td_ratio", "hls_ts_ctx",
            "hls_ts_file", "hls_ts_floor", "hls_vcodec", "hls_wait_keyframe", "hls_window",
        }
    ),
    "vhost.http_hooks": frozenset(
        {
            "enabled", "on_dvr", "on_hls", "on_hls_notify", "on_play", "on_publish", "on_stop",
            "on_unpublish",
        }
    ),
    "vhost.http_remux": frozenset(
        {
            "drop_if_not_match", "enabled", "fast_cache", "guess_has_av", "has_audio",
            "has_video", "mount",
        }
    ),
    "vhost.http_static": frozenset(
        {
            "dir", "enabled", "mount",
        }
    ),
    "vhost.ingest": frozenset(
        {
            "enabled", "engine", "ffmpeg", "input",
        }
    ),
    "vhost.ingest.engine": frozenset(
        {
            "abitrate", "achannels", "acodec", "aparams", "asample_rate", "enabled", "iformat",
            "oformat", "output", "perfile", "vbitrate", "vcodec", "vfilter", "vfps", "vheight",
            "vparams", "vpreset", "vprofile", "vthreads", "vwidth",
        }
    ),
    "vhost.ingest.engine.aparams": frozenset(
        {
            "profile:a",
        }
    ),
    "vhost.ingest.engine.perfile": frozenset(
        {
            "re", "rtsp_transport",
        }
    ),
    "vhost.ingest.engine.vfilter": frozenset(
        {
            "filter_complex", "i",
        }
    ),
    "vhost.ingest.engine.vparams": frozenset(
        {
            "b_strategy", "bf", "coder", "refs", "t",
        }
    ),
    "vhost.ingest.input": frozenset(
        {
            "type", "url",
        }
    ),
    "vhost.play": frozenset(
        {
            "atc", "atc_auto", "gop_cache", "gop_cache_max_frames", "mix_correct", "mw_latency",
            "mw_msgs", "queue_length", "reduce_sequence_header", "send_min_interval",
            "time_jitter",
        }
    ),
    "vhost.publish": frozenset(
        {
            "firstpkt_timeout", "kickoff_for_idle", "mr", "mr_latency", "normal_timeout",
            "parse_sps", "try_annexb_first",
        }
    ),
    "vhost.refer": frozenset(
        {
            "all", "enabled", "play", "publish",
        }
    ),
    "vhost.rtc": frozenset(
        {
            "aac_bitrate", "drop_for_pt", "dtls_role", "dtls_version", "enabled",
            "keep_avc_nalu_sei", "keep_bframe", "nack", "nack_no_copy", "opus_bitrate",
            "pli_for_rtmp", "rtc_to_rtmp", "rtmp_to_rtc", "stun_strict_check", "stun_timeout",
            "twcc",
        }
    ),
    "vhost.security": frozenset(
        {
            "allow", "enabled",
        }
    ),
    "vhost.srt": frozenset(
        {
            "enabled", "srt_to_rtmp",
        }
    ),
    "vhost.transcode": frozenset(
        {
            "enabled", "engine", "ffmpeg",
        }
    ),
    "vhost.transcode.engine": frozenset(
        {
            "abitrate", "achannels", "acodec", "aparams", "asample_rate", "enabled", "iformat",
            "oformat", "output", "perfile", "vbitrate", "vcodec", "vfilter", "vfps", "vheight",
            "vparams", "vpreset", "vprofile", "vthreads", "vwidth",
        }
    ),
    "vhost.transcode.engine.aparams": frozenset(
        {
            "bsf:a", "profile:a",
        }
    ),
    "vhost.transcode.engine.perfile": frozenset(
        {
            "re", "rtsp_transport",
        }
    ),
    "vhost.transcode.engine.vfilter": frozenset(
        {
            "filter_complex", "i", "vf",
        }
    ),
    "vhost.transcode.engine.vparams": frozenset(
        {
            "b_strategy", "bf", "coder", "refs", "t",
        }
    ),
}

# Known to SRS but absent from (or commented out in) its full.conf: older spellings that
# SRS still reads (``compat`` reads most of them the way SRS does), options it documents as
# always off, and names SRS 7 added (its check_normal_config lists them).
_EXTRA: dict[str, frozenset[str]] = {
    "main": frozenset(
        {
            "rtmp", "http_stream", "ff_log_level", "srs_log_level_v2", "rtmps", "rtsp_server",
        }
    ),
    "rtmp": frozenset({"listen", "chunk_size"}),
    "rtmps": frozenset({"enabled", "listen", "key", "cert"}),
    "rtsp_server": frozenset({"enabled", "listen"}),
    "srt_server": frozenset({"payloadsize", "sei_filter", "mix_correct", "default_streamid"}),
    "http_api.raw_api": frozenset({"allow_query", "allow_update"}),
    "vhost": frozenset(
        {
            "mode", "origin", "token_traverse", "debug_srs_upnode", "refer_publish",
            "refer_play", "bandcheck", "http", "http_flv", "mr", "mr_latency",
            "publish_1stpkt_timeout", "publish_normal_timeout", "time_jitter", "mix_correct",
            "atc", "atc_auto", "gop_cache", "queue_length", "send_min_interval",
            "reduce_sequence_header", "mw_latency", "hls", "hds", "dvr", "dash", "rtsp",
        }
    ),
    "vhost.forward": frozenset({"rtmps"}),
    "vhost.hls": frozenset(
        {
            "hls_use_fmp4", "hls_init_file", "hls_fmp4_file", "hls_recover",
            "hls_master_m3u8_path_relative", "hls_storage", "hls_mount",
        }
    ),
    "vhost.http_hooks": frozenset({"on_connect", "on_close"}),
    "vhost.security": frozenset({"deny"}),
    "vhost.rtc": frozenset({"init_rate_from_sdp", "bframe", "aac"}),
    "vhost.rtsp": frozenset({"enabled", "rtmp_to_rtsp"}),
}

for _context, _names in _EXTRA.items():
    SRS_KNOWN[_context] = SRS_KNOWN.get(_context, frozenset()) | _names


def srs_knows(context: str, name: str) -> bool:
    """Whether SRS accepts ``name`` in ``context`` (a dotted block path, ``main`` at the top)."""
    return name in SRS_KNOWN.get(context, frozenset())
