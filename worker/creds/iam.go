package creds

import (
	"encoding/json"
	"slices"
)

// The documents a customer pastes into IAM. They are generated, never
// hand-written per customer, so the ExternalId condition cannot be forgotten.

type statement struct {
	Sid       string         `json:"Sid,omitempty"`
	Effect    string         `json:"Effect"`
	Principal map[string]any `json:"Principal,omitempty"`
	Action    []string       `json:"Action"`
	Resource  []string       `json:"Resource,omitempty"`
	Condition map[string]any `json:"Condition,omitempty"`
}

type policyDoc struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

// TrustPolicy is the role's trust policy: only principalARN (stevedore's own
// role) may assume it, and only with the org's ExternalId. SourceIdentity and
// session tags need their own actions when the integration opts in.
func TrustPolicy(principalARN, externalID string, sourceIdentity, sessionTags bool) map[string]any {
	actions := []string{"sts:AssumeRole"}
	if sourceIdentity {
		actions = append(actions, "sts:SetSourceIdentity")
	}
	if sessionTags {
		actions = append(actions, "sts:TagSession")
	}
	return toMap(policyDoc{Version: "2012-10-17", Statement: []statement{{
		Sid: "StevedoreAssumeWithExternalId", Effect: "Allow",
		Principal: map[string]any{"AWS": principalARN}, Action: actions,
		Condition: map[string]any{"StringEquals": map[string]any{"sts:ExternalId": externalID}},
	}}})
}

// PermissionsPolicy is the least privilege stevedore needs: list the buckets
// (under the prefixes, when given), read their objects, and decrypt with the
// KMS key when the objects are encrypted with one. With no buckets it names
// "*", and the response says so.
func PermissionsPolicy(buckets, prefixes []string, kmsKeyARN string) map[string]any {
	bucketARNs, objectARNs := arns(buckets, prefixes)
	list := statement{Sid: "StevedoreList", Effect: "Allow", Action: []string{"s3:ListBucket", "s3:GetBucketLocation"}, Resource: bucketARNs}
	if len(prefixes) > 0 {
		like := []string{}
		for _, p := range prefixes {
			like = append(like, p+"*")
		}
		list.Condition = map[string]any{"StringLike": map[string]any{"s3:prefix": like}}
	}
	doc := policyDoc{Version: "2012-10-17", Statement: []statement{list,
		{Sid: "StevedoreRead", Effect: "Allow", Action: []string{"s3:GetObject", "s3:GetObjectVersion"}, Resource: objectARNs}}}
	if kmsKeyARN != "" {
		doc.Statement = append(doc.Statement, statement{Sid: "StevedoreDecrypt", Effect: "Allow", Action: []string{"kms:Decrypt"}, Resource: []string{kmsKeyARN}})
	}
	return toMap(doc)
}

// arns are the ARNs of the buckets, and of their objects under the
// prefixes ("*" for no buckets).
func arns(buckets, prefixes []string) (bucketARNs, objectARNs []string) {
	if len(buckets) == 0 {
		return []string{"arn:aws:s3:::*"}, []string{"arn:aws:s3:::*/*"}
	}
	for _, b := range slices.Sorted(slices.Values(buckets)) {
		bucketARNs = append(bucketARNs, "arn:aws:s3:::"+b)
		if len(prefixes) == 0 {
			objectARNs = append(objectARNs, "arn:aws:s3:::"+b+"/*")
		}
		for _, p := range prefixes {
			objectARNs = append(objectARNs, "arn:aws:s3:::"+b+"/"+p+"*")
		}
	}
	return bucketARNs, objectARNs
}

// TagsStatement is the statement to add to the permissions policy for
// collections or jobs with include_object_tags: reading the objects' tags.
// It is not in the least privilege: tags are read only when asked for.
func TagsStatement(buckets, prefixes []string) map[string]any {
	_, objectARNs := arns(buckets, prefixes)
	return toMap(statement{Sid: "StevedoreReadTags", Effect: "Allow", Action: []string{"s3:GetObjectTagging", "s3:GetObjectVersionTagging"}, Resource: objectARNs})
}

// CloudFormation is a template that creates the role with both policies and
// a one-hour MaxSessionDuration, and outputs its ARN.
func CloudFormation(principalARN, externalID string, buckets, prefixes []string, kmsKeyARN string, sourceIdentity, sessionTags bool) map[string]any {
	return map[string]any{
		"AWSTemplateFormatVersion": "2010-09-09",
		"Description":              "Read-only role for stevedore indexing, assumable only with your organization's ExternalId",
		"Resources": map[string]any{
			"StevedoreRole": map[string]any{
				"Type": "AWS::IAM::Role",
				"Properties": map[string]any{
					"AssumeRolePolicyDocument": TrustPolicy(principalARN, externalID, sourceIdentity, sessionTags),
					"MaxSessionDuration":       3600,
					"Policies": []any{map[string]any{
						"PolicyName":     "stevedore-read",
						"PolicyDocument": PermissionsPolicy(buckets, prefixes, kmsKeyARN),
					}},
				},
			},
		},
		"Outputs": map[string]any{
			"RoleArn": map[string]any{"Description": "Register this ARN with stevedore", "Value": map[string]any{"Fn::GetAtt": []string{"StevedoreRole", "Arn"}}},
		},
	}
}

func toMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// QueuePolicy is the access policy of an SQS queue that receives a
// customer's S3 notifications: only the S3 service may send, and only for
// the named buckets of the customer's account (aws:SourceArn and
// aws:SourceAccount), so nobody else can write records into it. Customers
// who fan out through SNS or EventBridge add their topic or rule as the
// source instead (docs/operations.md, "Incremental indexing from S3 notifications").
func QueuePolicy(queueARN, account string, buckets []string) map[string]any {
	sources := make([]string, 0, len(buckets))
	for _, b := range buckets {
		sources = append(sources, "arn:aws:s3:::"+b)
	}
	return toMap(policyDoc{Version: "2012-10-17", Statement: []statement{{
		Sid: "OnlyS3NotificationsOfTheseBuckets", Effect: "Allow",
		Principal: map[string]any{"Service": "s3.amazonaws.com"}, Action: []string{"sqs:SendMessage"}, Resource: []string{queueARN},
		Condition: map[string]any{
			"ArnLike":      map[string]any{"aws:SourceArn": sources},
			"StringEquals": map[string]any{"aws:SourceAccount": account},
		},
	}}})
}
