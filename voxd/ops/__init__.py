"""Operations: systemd integration, metrics."""
