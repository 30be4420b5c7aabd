package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/worker/extract"
)

// ocrFlags configure OCR (worker/extract/ocr.go) in processes that run
// workers.
type ocrFlags struct {
	enabled              *bool
	languages            *string
	processes, maxPages  *int
	pageTimeout, timeout *time.Duration
}

func addOCRFlags(f *flags) ocrFlags {
	return ocrFlags{
		enabled:     f.Bool("ocr", true, "read scanned PDF pages and images with Tesseract when it is installed (Debian's tesseract-ocr); without it they are skipped, saying so"),
		languages:   f.String("ocr-languages", extract.DefaultOCRLanguages, "Tesseract languages when a request names none, +-joined (e.g. eng+deu); each must be installed"),
		processes:   f.Int("ocr-processes", 0, "Tesseract processes at once per stevedore process (0: one per CPU)"),
		maxPages:    f.Int("ocr-max-pages", extract.DefaultOCRMaxPages, "a document needing OCR on more pages is skipped (too_large)"),
		pageTimeout: f.Duration("ocr-page-timeout", extract.DefaultOCRPageTimeout, "time cap of the OCR of one page"),
		timeout:     f.Duration("ocr-timeout", extract.DefaultOCRDocTimeout, "time cap of the OCR of one document (extract_timeout past it)"),
	}
}

// start finds Tesseract. It is reported at start either way — the
// stevedore_ocr_available gauge and a log line saying what is read and
// what to install — and is not fatal when missing: everything else is
// read. Languages asked for that are not installed are an error.
func (o ocrFlags) start(log *slog.Logger, reg prometheus.Registerer) (*extract.OCR, error) {
	available := prometheus.NewGauge(prometheus.GaugeOpts{Name: "stevedore_ocr_available",
		Help: "1 when this process reads scans and images with Tesseract (OCR), 0 when they are skipped because it is missing or --ocr=false."})
	if reg != nil {
		if err := reg.Register(available); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, err
		}
	}
	if !*o.enabled {
		log.Info("OCR off (--ocr=false): scanned PDFs are skipped no_text_layer and images unsupported_type")
		return nil, nil
	}
	ocr, err := extract.NewOCR(extract.OCRConfig{Languages: *o.languages, Processes: *o.processes, MaxPages: *o.maxPages,
		PageTimeout: *o.pageTimeout, DocTimeout: *o.timeout})
	switch {
	case err != nil && strings.Contains(err.Error(), "not installed"):
		return nil, fmt.Errorf("--ocr-languages: %w", err)
	case err != nil:
		log.Warn("OCR unavailable: scanned PDFs are skipped no_text_layer and images unsupported_type, each saying so", "error", err)
		return nil, nil
	}
	available.Set(1)
	log.Info("OCR ready", "languages", strings.Join(ocr.Languages(), ","), "default", *o.languages)
	return ocr, nil
}
